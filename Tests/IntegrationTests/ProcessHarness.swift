import Foundation
import Logging
import Testing
import TributaryAdminAPI
import TributaryCore
import TributaryCtl
import TributaryMQTT
import TributarySimulator
import TributaryTesting

/// Real parts as separate processes, as an operator runs them: a mosquitto broker and the
/// built `tributary-aggregator` and `tributary-agent` executables, on loopback ports in a
/// temporary directory. Tests start, signal and restart them at will.
struct ProcessHarness {
    let dir: TemporaryDirectory
    let broker: MosquittoBroker
    /// The aggregator's port.
    let httpPort: Int
    /// Where the agent sends batches: the aggregator, or a fault proxy in front of it.
    let agentTargetPort: Int
    /// Where the agent reaches its broker: the broker, or a fault proxy in front of it.
    let agentBrokerPort: Int
    let gatewayID: String
    let logger: Logger

    /// `aggregatorSettings` and `bufferSettings` are extra YAML lines for the agent's
    /// `aggregator:` and `buffer:` sections; `aggregatorConfig` lines go in the aggregator's
    /// config file. With `proxied`, the agent talks to the aggregator through `startProxy`.
    /// `sinkURL` replaces the default SQLite sink (e.g. a ClickHouse server's URL); the checks
    /// read `verifySinkURL` instead when it is given (the same sink, bypassing a fault proxy).
    /// `brokerSecurity` gives the broker a TLS listener or passwords (the agent's URL is then
    /// mqtts://), and `mqttSettings` are extra YAML lines for the agent's `mqtt:` section.
    /// `aggregatorURLs` replaces the agent's one aggregator URL with a list (failover).
    /// Everything goes in `directory` (a new temporary one by default), which `dir.remove()` deletes.
    init(gatewayID: String, aggregatorSettings: [String] = [], bufferSettings: [String] = [],
         aggregatorConfig: [String] = [], proxied: Bool = false, brokerProxied: Bool = false,
         sinkURL: String? = nil, verifySinkURL: String? = nil, directory: TemporaryDirectory? = nil,
         brokerSecurity: MosquittoBroker.Security = .init(), mqttSettings: [String] = [], aggregatorURLs: [String]? = nil) async throws {
        dir = try directory ?? TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("broker"), withIntermediateDirectories: true)
        broker = try await MosquittoBroker(directory: dir.file("broker"), security: brokerSecurity)
        httpPort = try FreePort.allocate()
        agentTargetPort = proxied ? try FreePort.allocate() : httpPort
        agentBrokerPort = brokerProxied ? try FreePort.allocate() : broker.port
        self.gatewayID = gatewayID
        self.verifySinkURL = verifySinkURL ?? sinkURL
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        self.logger = logger
        try """
            gateway_id: \(gatewayID)
            data_dir: \(dir.file("agent"))
            mqtt:
              broker: \(brokerSecurity.tls == nil ? "mqtt" : "mqtts")://127.0.0.1:\(agentBrokerPort)
              keepalive_seconds: 5
              reconnect_min_seconds: 1
              reconnect_max_seconds: 2
            \(mqttSettings.map { "  " + $0 }.joined(separator: "\n"))
              subscriptions:
            \(SensorSimulator.subscriptionYAML())
            buffer:
            \((["commit_interval_ms: 5"] + bufferSettings).map { "  " + $0 }.joined(separator: "\n"))
            aggregator:
            \(aggregatorURLs.map { "  urls: [\($0.joined(separator: ", "))]" } ?? "  url: http://127.0.0.1:\(agentTargetPort)")
            \(aggregatorSettings.map { "  " + $0 }.joined(separator: "\n"))
            """.write(toFile: dir.file("agent.yaml"), atomically: true, encoding: .utf8)
        try """
            listen: 127.0.0.1:\(httpPort)
            data_dir: \(dir.file("aggregator"))
            \((aggregatorConfig + (sinkURL.map { ["sink: \($0)"] } ?? [])).joined(separator: "\n"))
            """.write(toFile: dir.file("aggregator.yaml"), atomically: true, encoding: .utf8)
    }

    private let verifySinkURL: String?
    /// The aggregator's sink, as `verify` takes it.
    var sink: String { verifySinkURL ?? "sqlite:" + dir.file("aggregator/sink.sqlite") }
    var sinkPath: String { dir.file("aggregator/sink.sqlite") }

    func startAggregator() async throws -> ChildProcess {
        let process = try ChildProcess(
            executable: try Self.executable("tributary-aggregator"),
            arguments: ["--config", dir.file("aggregator.yaml")],
            logFile: dir.file("aggregator.log"))
        try await FreePort.waitUntilListening(httpPort)
        return process
    }

    enum Link { case agentToAggregator, agentToBroker }

    /// `tributary-sim proxy` on a link, with `arguments` for faults; it logs to `proxy.log`.
    func startProxy(_ arguments: [String], on link: Link = .agentToAggregator) async throws -> ChildProcess {
        let (listen, target) = link == .agentToAggregator ? (agentTargetPort, httpPort) : (agentBrokerPort, broker.port)
        return try await startProxy(listen: listen, target: target, arguments)
    }

    /// `tributary-sim proxy` from `listen` to `target` on loopback; it logs to `proxy.log`.
    func startProxy(listen: Int, target: Int, _ arguments: [String]) async throws -> ChildProcess {
        let process = try ChildProcess(
            executable: try Self.executable("tributary-sim"),
            arguments: ["proxy", "--listen", "127.0.0.1:\(listen)", "--target", "127.0.0.1:\(target)"] + arguments,
            logFile: dir.file("proxy.log"))
        try await FreePort.waitUntilListening(listen)
        return process
    }

    /// The operator token the aggregator created in its data directory on first start.
    var adminToken: String {
        get throws { try String(contentsOfFile: dir.file("aggregator/admin-token"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The admin API, as an operator's tributaryctl reads it.
    var fleetClient: FleetClient {
        get throws { FleetClient(aggregator: "http://127.0.0.1:\(httpPort)", token: try adminToken) }
    }

    /// The aggregator's fleet view, as an operator's tributaryctl reads it.
    func fleet() async throws -> FleetView {
        try await fleetClient.fleet().view
    }

    func gateway() async throws -> GatewayView? {
        try await fleet().gateways.first { $0.gatewayID == gatewayID }
    }

    /// Starts the agent; with `waitForSubscription`, returns once this run's subscriptions
    /// are confirmed by the broker (so the broker keeps its messages from then on).
    func startAgent(waitForSubscription: Bool = true, environment: [String: String] = [:]) async throws -> ChildProcess {
        let before = agentLog.components(separatedBy: "subscriptions confirmed").count
        let agent = try ChildProcess(executable: try Self.executable("tributary-agent"),
                                     arguments: ["--config", dir.file("agent.yaml")], logFile: dir.file("agent.log"),
                                     environment: environment)
        if waitForSubscription {
            do {
                try await eventually(timeout: .seconds(30), "the agent subscribes") {
                    agentLog.components(separatedBy: "subscriptions confirmed").count > before
                }
            } catch {
                throw TestingError("\(error); agent log:\n\(Self.tail(dir.file("agent.log")))")
            }
        }
        return agent
    }

    /// Everything the agent processes wrote so far.
    var agentLog: String { (try? String(contentsOfFile: dir.file("agent.log"), encoding: .utf8)) ?? "" }

    /// Publishes one message with `mosquitto_pub`, QoS 1 (retained with `retained`), as a device
    /// or another MQTT client would.
    func publishOne(topic: String, payload: String, retained: Bool = false) async throws {
        let publish = try ChildProcess(executable: "/usr/bin/mosquitto_pub", arguments: [
            "-h", "127.0.0.1", "-p", String(broker.port), "-q", "1", "-t", topic, "-m", payload,
        ] + (retained ? ["-r"] : []), logFile: dir.file("mosquitto_pub.log"))
        #expect(await publish.wait() == 0)
    }

    /// Publishes `count` simulated messages from 10 sensors at `rate` per second.
    func publish(_ count: Int, rate: Double) throws -> Task<Manifest, any Error> {
        let simulator = SensorSimulator(options: .init(broker: try MQTTBroker(url: broker.url), gatewayID: gatewayID,
                                                       sensors: 10, rate: rate, count: count), logger: logger)
        return Task { try await simulator.run() }
    }

    /// Waits until the sink holds at least every reading of `manifest` and then stays put for
    /// a while (a late resend would show as a duplicate), and returns the conservation report.
    func verifyWhenComplete(_ manifest: Manifest, timeout: Duration = .seconds(60)) async throws -> Verifier.Report {
        do {
            try await eventually(timeout: timeout, "the sink holds every reading") {
                try await Verifier.verify(manifest, sink: sink).found >= manifest.entries.count
            }
        } catch {
            // Say where it stuck: the report and the last words of each process.
            let report = try? await Verifier.verify(manifest, sink: sink)
            throw TestingError("""
                \(error); \(report.map(String.init(describing:)) ?? "no report")
                agent log:\n\(Self.tail(dir.file("agent.log")))
                aggregator log:\n\(Self.tail(dir.file("aggregator.log")))
                """)
        }
        return try await verifyWhenSettled(manifest)
    }

    /// The last lines of a log file.
    static func tail(_ path: String, lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Waits until the sink has not changed for three seconds (longer than the tests' agent
    /// reconnect and retry delays), then returns the conservation report.
    func verifyWhenSettled(_ manifest: Manifest) async throws -> Verifier.Report {
        var samples: [Int] = []
        try await eventually("the sink stops changing") {
            samples.append(try await Verifier.verify(manifest, sink: sink).found)
            try await Task.sleep(for: .seconds(1))
            return samples.count >= 4 && Set(samples.suffix(4)).count == 1 && samples.last! > 0
        }
        return try await Verifier.verify(manifest, sink: sink)
    }

    /// Stops `processes` with SIGTERM, in order, then the broker.
    func stop(_ processes: ChildProcess...) async {
        for process in processes { await process.stop(signal: SIGTERM) }
        await broker.stop()
    }

    /// Where SwiftPM put the executables: beside the test bundle.
    static var binDirectory: String {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" && !FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("tributary-agent").path) {
            url.deleteLastPathComponent()
        }
        return url.path
    }

    static func executable(_ name: String) throws -> String {
        let path = binDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestingError("\(name) is not built next to the tests; run `swift build --build-tests` first")
        }
        return path
    }

    /// Runs a command to its end; returns its exit code and what it printed (stdout and stderr),
    /// captured in a file in `directory` that is removed afterwards.
    static func run(_ executable: String, _ arguments: [String], in directory: String) async throws -> (code: Int32, output: String) {
        let log = directory + "/run-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let status = await try ChildProcess(executable: executable, arguments: arguments, logFile: log).wait()
        return (exitCode(status), (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// The exit code of a wait status, or -1 when the process died of a signal.
    static func exitCode(_ status: Int32) -> Int32 {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : -1
    }
}
