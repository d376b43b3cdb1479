import TributarySimulator

/// Everything is in TributarySimulator (`Commands.swift`); this only starts it.
@main
enum Main {
    static func main() async { await Sim.main() }
}
