import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TributaryAgent
import TributaryAggregator
import TributaryMQTT
import TributarySimulator
import TributaryTesting
import TributaryCrypto
import NIOSSL

/// Real parts for one test: a mosquitto broker, an aggregator with its SQLite sink, and
/// agents started and stopped at will, all in a temporary directory on loopback ports.
final class Harness: @unchecked Sendable {
    let directory: TemporaryDirectory
    let broker: MosquittoBroker
    let aggregator: Aggregator
    let aggregatorURL: String
    /// What a client needs to trust the aggregator's certificate (nil: plain HTTP).
    let clientTLS: TLSConfiguration?
    let logger: Logger
    private let aggregatorGroup: ServiceGroup
    private let aggregatorTask: Task<Void, any Error>
    /// Every agent started, so that `shutdown` stops those a failed test left running.
    private let started = Mutex<[RunningAgent]>([])

    /// With `gatewayTokens` (gateway id, token), the aggregator requires them
    /// (`gateway_auth.token_file`, written to `gatewayTokenFile`). With `tls`, it serves HTTPS
    /// (its files made in `directory` by the caller, hence `directory` as a parameter).
    /// `configure` changes the aggregator's configuration last.
    init(gatewayTokens: [(String, String)]? = nil, tls: AggregatorConfig.ServerTLS? = nil, trusting caFile: String? = nil,
         directory: TemporaryDirectory? = nil, configure: (inout AggregatorConfig) -> Void = { _ in }) async throws {
        clientTLS = try caFile.map { try TLSFiles.trusting($0, key: "test CA") }
        let directory = try directory ?? TemporaryDirectory()
        self.directory = directory
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        self.logger = logger
        for sub in ["broker", "aggregator", "agent"] {
            try FileManager.default.createDirectory(atPath: directory.file(sub), withIntermediateDirectories: true)
        }
        broker = try await MosquittoBroker(directory: directory.file("broker"))
        var config = AggregatorConfig(listenPort: 0, dataDirectory: directory.file("aggregator"))
        if let gatewayTokens {
            try directory.writeSecret("gateway-tokens", gatewayTokens.map { "\($0.0) \($0.1)\n" }.joined())
            config.gatewayTokenFile = directory.file("gateway-tokens")
        }
        config.tls = tls
        configure(&config)
        aggregator = try Aggregator(config: config, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [aggregator], logger: logger))
        aggregatorGroup = group
        aggregatorTask = Task { try await group.run() }
        aggregatorURL = "\(tls == nil ? "http" : "https")://127.0.0.1:\(await aggregator.port())"
    }

    var sinkURL: String { "sqlite:" + directory.file("aggregator/sink.sqlite") }
    var gatewayTokenFile: String { directory.file("gateway-tokens") }

    func agentConfig(gatewayID: String = "gw-test", extra: String = "") throws -> AgentConfig {
        try AgentConfig.parse(yaml: """
            gateway_id: \(gatewayID)
            data_dir: \(directory.file("agent"))
            mqtt:
              broker: \(broker.url)
              subscriptions:
                  - topic: "sensors/+/+"
                    template: "sensors/{gateway}/{sensor}"
                    format: json
                    time_field: ts
                  - topic: "site/+/+/+"
                    template: "site/{gateway}/{sensor}/{metric}"
                    format: number
            aggregator:
              url: \(aggregatorURL)
              batch_max_readings: 500
              batch_max_age_ms: 200
              retry_initial_ms: 50
              retry_max_ms: 1000
            \(extra)
            """, file: "test.yaml")
    }

    /// Starts an agent and waits until the broker has confirmed its subscriptions.
    func startAgent(_ config: AgentConfig) async throws -> RunningAgent {
        let agent = try Agent(config: config, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [agent], logger: logger))
        let task = Task { try await group.run() }
        started.withLock { $0.append(RunningAgent(agent: agent, group: group, task: task)) }
        let deadline = ContinuousClock.now + .seconds(20)
        while !agent.stats.subscribed {
            guard ContinuousClock.now < deadline else { throw TestingError("agent did not subscribe within 20 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return RunningAgent(agent: agent, group: group, task: task)
    }

    /// Publishes `count` simulated messages for `gatewayID` (10 sensors) and waits until the
    /// sink holds every reading; returns the conservation report.
    func publishAndVerify(gatewayID: String, count: Int, rate: Double = 500, seed: UInt64) async throws -> Verifier.Report {
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: broker.url), gatewayID: gatewayID, sensors: 10, rate: rate, count: count)
        options.seed = seed
        let manifest = try await SensorSimulator(options: options, logger: logger).run()
        var report = Verifier.Report()
        try await eventually("the sink holds every reading the agent sent") {
            report = try await Verifier.verify(manifest, sink: sinkURL)
            return report.found >= manifest.entries.count
        }
        return report
    }

    func shutdown() async {
        // Agents a failed test left running (a stopped one stops again at once).
        for agent in started.withLock({ $0 }) { try? await agent.stop() }
        await aggregatorGroup.triggerGracefulShutdown()
        _ = try? await aggregatorTask.value
        await broker.stop()
        directory.remove()
    }
}

struct RunningAgent {
    let agent: Agent
    let group: ServiceGroup
    let task: Task<Void, any Error>

    /// As on SIGTERM: stop reading, commit, release the buffer file.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Runs `body` with a new harness, and shuts the harness down afterwards however `body` ends.
func withHarness<T>(gatewayTokens: [(String, String)]? = nil, tls: AggregatorConfig.ServerTLS? = nil, trusting caFile: String? = nil,
                    directory: TemporaryDirectory? = nil, configure: (inout AggregatorConfig) -> Void = { _ in },
                    _ body: (Harness) async throws -> T) async throws -> T {
    let harness = try await Harness(gatewayTokens: gatewayTokens, tls: tls, trusting: caFile, directory: directory, configure: configure)
    do {
        let result = try await body(harness)
        await harness.shutdown()
        return result
    } catch {
        await harness.shutdown()
        throw error
    }
}

/// Runs `body` with `client`, and shuts the client down afterwards however `body` ends.
func withHTTPClient<T>(_ client: HTTPClient, _ body: (HTTPClient) async throws -> T) async throws -> T {
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

