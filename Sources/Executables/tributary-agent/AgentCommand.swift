import ArgumentParser
import CMalloc
import Foundation
import Logging
import ServiceLifecycle
import TributaryAgent
import TributaryLogging

/// `tributary-agent [run] [flags]` runs the agent (`run` is the default, so the units, scripts
/// and docs that start it with flags alone keep working); `quarantine` and `set-aside` are the
/// operator's tools on its buffer.
@main
struct AgentRoot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-agent",
        abstract: "Collects MQTT readings on a gateway, buffers them in SQLite, and syncs them to an aggregator.",
        discussion: """
            Without a subcommand it runs the agent (the same as `tributary-agent run`; see `tributary-agent run --help` \
            for its flags). `quarantine` and `set-aside` inspect and act on what waits in the buffer for an operator, \
            also while the agent runs.
            """,
        subcommands: [AgentCommand.self, QuarantineCommand.self, SetAsideCommand.self],
        defaultSubcommand: AgentCommand.self)

    /// Before anything else runs (argument parsing starts threads that allocate). SIGHUP is
    /// ignored from here on, so one sent before the reloader listens does not kill the agent
    /// (nor a quarantine or set-aside command).
    static func main() async {
        signal(SIGHUP, SIG_IGN)
        limitMallocArenas()
        await main(nil)
    }
}

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs the agent (the default: `tributary-agent --config FILE` is `tributary-agent run --config FILE`).",
        discussion: "Flags override the configuration file. SIGTERM or SIGINT stops reading, commits what was received, and exits 0. SIGHUP (systemctl reload) reads the configuration file again and applies what can change live (docs/operations.md).")

    @Option(name: .long, help: "YAML configuration file (or the environment variable TRIBUTARY_AGENT_CONFIG).")
    var config: String?

    /// The flag, else the environment (flags over environment over file over defaults).
    var configFile: String? { config ?? ProcessInfo.processInfo.environment["TRIBUTARY_AGENT_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } }

    @Option(name: .long, help: "This gateway's id (overrides gateway_id).")
    var gatewayId: String?

    @Option(name: .long, help: "MQTT broker, mqtt://HOST:PORT (overrides mqtt.broker).")
    var broker: String?

    @Option(name: .long, help: "Aggregator, http://HOST:PORT; repeat it or separate with commas for several sharing one sink, with failover (overrides aggregator.url and aggregator.urls).")
    var aggregator: [String] = []

    @Option(name: .long, help: "Directory for the buffer file (overrides data_dir).")
    var dataDir: String?

    @Option(name: .long, help: "Local listener for /metrics, /healthz, /readyz, HOST:PORT (overrides status_listen; default off).")
    var statusListen: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (overrides log_level; default info).")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Log format: text or json (one object per line; overrides log_format).")
    var logFormat: LogFormat?

    @Flag(name: .long, help: "Check the configuration (and every file it names) and exit: 0 printing what the agent would run with, secrets redacted, or 1 naming every problem.")
    var checkConfig = false

    func run() async throws {
        var overrides = AgentConfig.Overrides(gatewayID: gatewayId, broker: broker, dataDirectory: dataDir,
                                              statusListen: statusListen, logFormat: logFormat)
        overrides.aggregatorURLs = aggregator.isEmpty ? nil : aggregator
        overrides.logLevel = logLevel
        if checkConfig { runCheckConfig(overrides) }
        do {
            let settings = try AgentConfig.load(
                file: configFile,
                overrides: overrides)
            let logging = LiveLogging.bootstrap(level: settings.logLevel, format: settings.logFormat)
            let logger = Logger(label: "tributary-agent")
            WallClockFault.followIfRequested(logger: logger)
            // The agent releases what it holds when it stops, however it stops.
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: try Agent(config: settings, logger: logger, reloadingFrom: .init(
                    file: configFile, overrides: overrides, logging: logging)))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
            try await group.run()
        } catch {
            throw Failure("tributary-agent: \(error)")
        }
    }
}

extension AgentCommand {
    /// `--check-config`: what the agent would run with on stdout and exit 0, or every problem
    /// on stderr and exit 1.
    func runCheckConfig(_ overrides: AgentConfig.Overrides) -> Never {
        let outcome = AgentConfigCheck.run(file: configFile, overrides: overrides)
        outcome.finish(program: "tributary-agent", configFile: configFile)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}

/// Ends the command with one clear line on stderr and exit code 1 (no usage text).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per core), each keeping
/// its freed memory apart: at 10k readings/s the agent's threads (MQTT, committer, thread pool,
/// event loop, task pool) peaked 4.5 MB higher than with one (docs/performance.md). Small
/// allocations mostly come from glibc's per-thread caches without the arena's lock. An operator's
/// `MALLOC_ARENA_MAX` still decides.
private func limitMallocArenas() {
    if ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil { _ = tributary_limit_malloc_arenas(1) }
}
