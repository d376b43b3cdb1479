import TributaryCtl

/// Everything is in TributaryCtl (`Commands.swift`); this only starts it.
@main
enum Main {
    static func main() async { await Ctl.main() }
}
