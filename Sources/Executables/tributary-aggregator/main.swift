import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TributaryAggregator
import TributaryLogging

@main
struct AggregatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-aggregator",
        abstract: "Receives batches from gateway agents, deduplicates them, and writes them to a sink.",
        discussion: "Flags override the configuration file. Batches are acknowledged only after the sink committed them. SIGHUP (systemctl reload) reads the configuration file again and applies what can change live (docs/operations.md).")

    @Option(name: .long, help: "YAML configuration file (or the environment variable TRIBUTARY_AGGREGATOR_CONFIG).")
    var config: String?

    /// The flag, else the environment (flags over environment over file over defaults).
    var configFile: String? { config ?? ProcessInfo.processInfo.environment["TRIBUTARY_AGGREGATOR_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } }

    @Option(name: .long, help: "Address to listen on, HOST:PORT (overrides listen; default 127.0.0.1:8470).")
    var listen: String?

    @Option(name: .long, help: "Directory for the fleet registry and the default sink (overrides data_dir).")
    var dataDir: String?

    @Option(name: .long, help: ArgumentHelp(
        "Sink (overrides sink; default sqlite:<data_dir>/sink.sqlite; none: a relay that only forwards).",
        discussion: "sqlite:PATH, or clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE] (clickhouse+https:// for TLS).",
        valueName: "url"))
    var sink: String?

    @Option(name: .long, help: ArgumentHelp(
        "The next tier's aggregator: makes this aggregator a relay (overrides upstream.url and upstream.urls; several, comma-separated, share one sink and are failed over between).",
        discussion: "A relay keeps what it accepts in its spool (and its sink, unless sink: none) and forwards it verbatim.",
        valueName: "url"))
    var upstream: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (overrides log_level; default info).")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Log format: text or json (one object per line; overrides log_format).")
    var logFormat: LogFormat?

    @Flag(name: .long, help: "Check the configuration (and every file it names) and exit: 0 printing what the aggregator would run with, secrets redacted, or 1 naming every problem.")
    var checkConfig = false

    /// SIGHUP is ignored from the first instruction, so one sent before the reloader listens does
    /// not kill the aggregator.
    static func main() async {
        signal(SIGHUP, SIG_IGN)
        await main(nil)
    }

    func run() async throws {
        var overrides = AggregatorConfig.Overrides(listen: listen, dataDirectory: dataDir, sink: sink, logFormat: logFormat, upstream: upstream)
        overrides.logLevel = logLevel
        if checkConfig { runCheckConfig(overrides) }
        do {
            let settings = try AggregatorConfig.load(file: configFile, overrides: overrides)
            let logging = LiveLogging.bootstrap(level: settings.logLevel, format: settings.logFormat)
            let logger = Logger(label: "tributary-aggregator")
            // The aggregator closes what it opened when it stops, however it stops.
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: try Aggregator(config: settings, logger: logger, reloadingFrom: .init(
                    file: configFile, overrides: overrides, logging: logging)))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
            try await group.run()
        } catch {
            throw Failure("tributary-aggregator: \(error)")
        }
    }
}

extension AggregatorCommand {
    /// `--check-config`: what the aggregator would run with on stdout and exit 0, or every
    /// problem on stderr and exit 1.
    func runCheckConfig(_ overrides: AggregatorConfig.Overrides) -> Never {
        let outcome = AggregatorConfigCheck.run(file: configFile, overrides: overrides,
                                                logger: Logger(label: "tributary-aggregator", factory: { _ in SwiftLogNoOpLogHandler() }))
        outcome.finish(program: "tributary-aggregator", configFile: configFile)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}

/// Ends the command with one clear line on stderr and exit code 1 (no usage text).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
