import ArgumentParser
import Foundation
import TributaryAdminAPI
import TributaryCore
import TributaryCrypto
import TributaryRuntime

/// The tributaryctl command line: its subcommands and their options. The executable's main
/// only calls `Ctl.main()`.
public struct Ctl: AsyncParsableCommand {
    public init() {}

    /// Shared options may come before the subcommand (`tributaryctl --aggregator URL status`).
    public static func main() async {
        let names = Set(configuration.subcommands.map { $0._commandName })
        await main(GlobalOptions.reorder(Array(CommandLine.arguments.dropFirst()), subcommands: names))
    }

    public static let configuration = CommandConfiguration(
        commandName: "tributaryctl",
        abstract: "Shows the sync state of a Tributary fleet, from an aggregator's admin API.",
        discussion: """
            The admin API needs the operator token (the aggregator writes one to <data_dir>/admin-token on first start).
            Shell completions: tributaryctl --generate-completion-script bash|zsh|fish.
            """,
        subcommands: [Status.self, Gateways.self, Relays.self, GatewayCommand.self, Watch.self, Check.self])
}

struct Connection: ParsableArguments {
    @Option(name: .long, help: "Aggregator URL (default: $TRIBUTARY_AGGREGATOR or http://127.0.0.1:8470). Repeat it, or separate URLs with commas, for aggregators that share a sink: their views are joined, each gateway once.")
    var aggregator: [String] = []

    /// The URLs given, else the environment's (which may list several, comma-separated), else the local default.
    var aggregators: [String] {
        let given = aggregator.isEmpty ? [ProcessInfo.processInfo.environment["TRIBUTARY_AGGREGATOR"] ?? ""] : aggregator
        let urls = given.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
        return urls.isEmpty ? ["http://127.0.0.1:8470"] : urls
    }

    @Option(name: .long, help: "Operator token (default: $TRIBUTARY_TOKEN).")
    var token: String?

    @Option(name: .long, help: "File holding the operator token (default: $TRIBUTARY_TOKEN_FILE, else the aggregator's own file when readable; an empty $TRIBUTARY_TOKEN_FILE turns that off).")
    var tokenFile: String?

    @Option(name: .long, help: "PEM file of the CA that signed an https:// aggregator's certificate (default: $TRIBUTARY_CA_FILE, else the system's CAs).")
    var caFile: String? = ProcessInfo.processInfo.environment["TRIBUTARY_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 }

    /// One token and CA for all of them: aggregators sharing a sink share their operators.
    func client() throws -> FleetSources {
        do {
            let token = try FleetClient.resolveToken(flag: token, file: tokenFile, environment: ProcessInfo.processInfo.environment)
            let tls = try caFile.map { path throws(TLSFiles.Problem) in try TLSFiles.trusting(path, key: "--ca-file") }
            return FleetSources(aggregators.map { FleetClient(aggregator: $0, token: token, tls: tls) })
        } catch {
            throw Failure("tributaryctl: \(error)")
        }
    }
}

struct Output: ParsableArguments {
    @Flag(name: .long, help: "Print the aggregator's JSON instead of text.")
    var json = false

    func show(_ data: Data, text: () -> String) {
        if json {
            FileHandle.standardOutput.write(data)
            print()
        } else {
            print(text(), terminator: "")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fleet summary: gateways online and stale, backlog, worst lag, ingest rate, sink health, losses.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    func run() async throws {
        let (view, data): (FleetView, Data)
        do {
            (view, data) = try await connection.client().summary()
        } catch let error as FleetClient.FetchError {
            throw Failure("tributaryctl: \(error)")
        }
        output.show(data) { FleetRendering.status(view, aggregator: connection.aggregators.joined(separator: ", ")) }
    }
}

struct Gateways: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One row per gateway: state, last seen, lag, backlog, rates, losses, clock skew, last error.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    @Option(name: .long, help: "Order: id, lag (most behind first), backlog (largest first), last-seen (longest silent first).")
    var sort: FleetQuery.Order = .id

    @Flag(name: .long, help: "Only gateways shown stale.")
    var stale = false

    @Option(name: .long, help: ArgumentHelp("Only gateways at least this far behind, e.g. 30s, 5m, 1h30m.", valueName: "duration"))
    var lagging: String?

    @Option(name: .long, help: "At most this many rows (the first, in --sort order); the aggregator sends only those.")
    var limit: Int?

    func validate() throws {
        if let lagging, Units.milliseconds(lagging) == nil {
            throw ValidationError("--lagging '\(lagging)' is not a duration such as 30s, 5m or 1h30m")
        }
        if let limit, !(0...FleetQuery.maxLimit).contains(limit) { throw ValidationError("--limit takes 0 to \(FleetQuery.maxLimit)") }
    }

    func run() async throws {
        let query = FleetQuery(order: sort, onlyStale: stale, laggingAtLeastMs: lagging.flatMap(Units.milliseconds), limit: limit)
        let (view, rows): (FleetView, [GatewayView])
        do {
            (view, rows) = try await connection.client().gateways(query)
        } catch let error as FleetClient.FetchError {
            throw Failure("tributaryctl: \(error)")
        }
        if output.json {
            var filtered = view
            filtered.gateways = rows
            output.show(try encode(filtered)) { "" }
        } else {
            print(FleetRendering.gatewaysTable(view, rows: rows) + FleetRendering.refusedSendersTable(view), terminator: "")
        }
    }
}

struct Relays: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One row per relay reporting to this aggregator: spool, oldest unforwarded batch, upstream state, forward rate, set aside.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    func run() async throws {
        let (view, _) = try await fetchFleet(connection)
        if output.json {
            output.show(try encode(view.gateways.filter { $0.relay != nil })) { "" }
        } else {
            print(FleetRendering.relaysTable(view), terminator: "")
        }
    }
}

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "One gateway in detail: backlog, lag, clock skew, losses, last error, and its recent sync history.")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    @Argument(help: "The gateway's id.")
    var id: String

    func run() async throws {
        do {
            let (detail, data) = try await connection.client().gateway(id)
            output.show(data) { FleetRendering.gatewayDetail(detail) }
        } catch let error as FleetClient.FetchError {
            throw Failure("tributaryctl: \(error)")
        }
    }
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live full-screen view that refreshes in place, with sparklines of ingest rate and backlog. q or Ctrl-C quits.")
    @OptionGroup var connection: Connection

    @Option(name: .long, help: "Seconds between refreshes.")
    var interval: Double = 2

    func validate() throws {
        guard interval >= 0.2 else { throw ValidationError("--interval must be at least 0.2 seconds") }
        guard Terminal.isInteractive else { throw ValidationError("watch needs a terminal; use status or gateways --json in scripts") }
    }

    func run() async throws {
        let client = try connection.client()
        let terminal = Terminal()
        let keys = Terminal.keys()
        terminal.enterFullScreen()
        defer {
            keys.stop()
            terminal.restore()
        }
        // Signals from outside (kill, a closed ssh session) also put the terminal back first.
        let signals = [SIGTERM, SIGHUP, SIGINT, SIGQUIT].map { sig -> any DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig)
            source.setEventHandler {
                keys.stop()
                terminal.restore()
                Foundation.exit(128 + sig)
            }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }

        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        var history = WatchHistory()
        var last: FleetView?
        var problem: String?
        // One event stream: keys, ticks, and fetched views. A fetch runs beside the loop, so a
        // slow aggregator never delays q; ticks while a fetch is under way are skipped.
        let (events, sink) = AsyncStream<WatchEvent>.makeStream()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    sink.yield(.tick)
                    try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
                }
            }
            group.addTask {
                for await key in keys.stream { sink.yield(.key(key)) }
                sink.yield(.key(UInt8(ascii: "q")))  // input closed
            }
            var fetching = false
            loop: for await event in events {
                switch event {
                case .key(let key) where [UInt8(ascii: "q"), UInt8(ascii: "Q"), 0x03, 0x04].contains(key):
                    break loop
                case .key:
                    continue
                case .tick:
                    // Redraw (the clock moves, a first screen appears at once), and fetch unless
                    // a fetch is still under way.
                    if !fetching {
                        fetching = true
                        group.addTask {
                            do throws(FleetClient.FetchError) {
                                // The most-behind first, as many as a screen shows, and the totals.
                                sink.yield(.fetched(.success(try await client.gateways(FleetQuery(order: .lag, limit: 200)).view)))
                            } catch {
                                sink.yield(.fetched(.failure(error)))
                            }
                        }
                    }
                case .fetched(let result):
                    fetching = false
                    switch result {
                    case .success(let view):
                        history.add(view)
                        last = view
                        problem = nil
                    case .failure(let error):
                        problem = "\(error)"
                    }
                }
                let size = Terminal.size
                let view = last ?? FleetView(generatedAtMs: WallClock.nowMs(), staleAfterSeconds: 0, sink: "?", gateways: [])
                let shownProblem = problem ?? (last == nil ? "waiting for the aggregator's first answer" : nil)
                terminal.draw(WatchScreen.render(view, history: history, aggregator: client.description, clock: formatter.string(from: Date()),
                                                 intervalSeconds: interval, width: size.width, height: size.height, problem: shownProblem))
            }
            // Quit: stop the ticker, the key reader and a fetch under way, without waiting for them.
            sink.finish()
            keys.stop()
            group.cancelAll()
        }
    }

    enum WatchEvent: Sendable {
        case tick
        case key(UInt8)
        case fetched(Result<FleetView, FleetClient.FetchError>)
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks the fleet for alerting scripts: exit 0 OK, 2 CRITICAL (a stale gateway, a gateway refused for its credentials, a threshold passed, or the sink failing), 3 UNKNOWN (no answer).")
    @OptionGroup var connection: Connection
    @OptionGroup var output: Output

    @Option(name: .long, help: ArgumentHelp("Critical when a gateway is further behind than this, e.g. 5m.", valueName: "duration"))
    var maxLag: String?

    @Option(name: .long, help: "Critical when more gateways than this are stale (default 0: any stale gateway).")
    var maxStale: Int = 0

    @Flag(name: .long, help: "Do not treat a failing sink as critical.")
    var ignoreSink = false

    @Flag(name: .long, help: "Do not treat gateways refused for their credentials as critical.")
    var ignoreRefused = false

    func validate() throws {
        if let maxLag, Units.milliseconds(maxLag) == nil {
            throw ValidationError("--max-lag '\(maxLag)' is not a duration such as 30s, 5m or 1h30m")
        }
        if maxStale < 0 { throw ValidationError("--max-stale must be 0 or more") }
    }

    func run() async throws {
        var check = FleetCheck(maxLagMs: maxLag.flatMap(Units.milliseconds), maxStale: maxStale, sinkMustBeHealthy: !ignoreSink)
        check.refusedCredentialsAreCritical = !ignoreRefused
        let view: FleetView
        do {
            view = try await connection.client().fleet().view
        } catch {
            // Whatever kept the answer away (no aggregator, wrong token, unreadable token file):
            // alerting must read it as UNKNOWN, not as a warning.
            print("UNKNOWN: \(error)")
            throw ExitCode(FleetCheck.Code.unknown.rawValue)
        }
        let (code, lines) = check.evaluate(view)
        if output.json {
            let report = CheckReport(status: code == .ok ? "ok" : "critical", code: Int(code.rawValue), findings: Array(lines.dropFirst()))
            output.show(try encode(report)) { "" }
        } else {
            print(lines.joined(separator: "\n"))
        }
        if code != .ok { throw ExitCode(code.rawValue) }
    }

    struct CheckReport: Encodable {
        let status: String
        let code: Int
        let findings: [String]
    }
}

extension FleetQuery.Order: ExpressibleByArgument {}

func fetchFleet(_ connection: Connection) async throws -> (FleetView, Data) {
    do {
        return try await connection.client().fleet()
    } catch let error as FleetClient.FetchError {
        throw Failure("tributaryctl: \(error)")
    }
}

func encode(_ value: some Encodable) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return try encoder.encode(value)
}

/// Ends the command with one clear line on stderr and exit code 1 (no usage text).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
