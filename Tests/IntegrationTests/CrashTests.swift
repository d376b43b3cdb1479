import Foundation
import Logging
import Testing
import TributaryMQTT
import TributarySimulator
import TributaryTesting

/// kill -9 of the real executables in the middle of a stream: the durability claims in the
/// README, checked with the conservation check.
@Suite("crashes", .serialized)
struct CrashTests {
    let dir: TemporaryDirectory
    let broker: MosquittoBroker
    let httpPort: Int
    let logger: Logger

    init() async throws {
        dir = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("broker"), withIntermediateDirectories: true)
        broker = try await MosquittoBroker(directory: dir.file("broker"))
        httpPort = try FreePort.allocate()
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        self.logger = logger
        try """
            gateway_id: gw-crash
            data_dir: \(dir.file("agent"))
            mqtt:
              broker: \(broker.url)
              subscriptions:
            \(SensorSimulator.subscriptionYAML())
            aggregator:
              url: http://127.0.0.1:\(httpPort)
              batch_max_age_ms: 100
              batch_max_readings: 250
              retry_initial_ms: 50
              retry_max_ms: 500
            """.write(toFile: dir.file("agent.yaml"), atomically: true, encoding: .utf8)
    }

    func startAggregator() async throws -> ChildProcess {
        let process = try ChildProcess(
            executable: try ExecutableTests.executable("tributary-aggregator"),
            arguments: ["--listen", "127.0.0.1:\(httpPort)", "--data-dir", dir.file("aggregator")],
            logFile: dir.file("aggregator.log"))
        try await FreePort.waitUntilListening(httpPort)
        return process
    }

    func startAgent(waitForSubscription: Bool) async throws -> ChildProcess {
        let count = { (try? String(contentsOfFile: dir.file("agent.log"), encoding: .utf8))?.components(separatedBy: "subscriptions confirmed").count ?? 1 }
        let before = count()
        let agent = try ChildProcess(executable: try ExecutableTests.executable("tributary-agent"),
                                     arguments: ["--config", dir.file("agent.yaml")], logFile: dir.file("agent.log"))
        if waitForSubscription {
            try await eventually(timeout: .seconds(30), "the agent subscribes") { count() > before }
        }
        return agent
    }

    func publish(_ count: Int) throws -> Task<Manifest, any Error> {
        let simulator = SensorSimulator(options: .init(broker: try MQTTBroker(url: broker.url), gatewayID: "gw-crash",
                                                       sensors: 10, rate: 600, count: count), logger: logger)
        return Task { try await simulator.run() }
    }

    var sink: String { "sqlite:" + dir.file("aggregator/sink.sqlite") }

    @Test("aggregator killed with SIGKILL three times mid-stream: 0 missing, 0 duplicates")
    func aggregatorKilled() async throws {
        defer { dir.remove() }
        var aggregator = try await startAggregator()
        let agent = try await startAgent(waitForSubscription: true)
        let publishing = try publish(3000)
        for _ in 0..<3 {
            try await Task.sleep(for: .milliseconds(1200))
            await aggregator.stop(signal: SIGKILL)
            try await Task.sleep(for: .milliseconds(300))
            aggregator = try await startAggregator()
        }
        let manifest = try await publishing.value
        try await eventually("the sink holds every reading") { try Verifier.verify(manifest, sink: sink).found >= manifest.entries.count }
        let report = try Verifier.verify(manifest, sink: sink)
        #expect(report.passed, "\(report)")
        await agent.stop(signal: SIGTERM)
        await aggregator.stop(signal: SIGTERM)
        await broker.stop()
    }

    @Test("agent killed with SIGKILL three times mid-stream: 0 duplicates, losses within the documented window")
    func agentKilled() async throws {
        defer { dir.remove() }
        let aggregator = try await startAggregator()
        var agent = try await startAgent(waitForSubscription: true)
        let publishing = try publish(3000)
        let kills = 3
        for _ in 0..<kills {
            try await Task.sleep(for: .milliseconds(1200))
            await agent.stop(signal: SIGKILL)
            agent = try await startAgent(waitForSubscription: false)
        }
        let manifest = try await publishing.value
        // Everything the restarted agent holds is delivered; then nothing more changes.
        var last = -1
        try await eventually("the sink stops growing") {
            let found = try Verifier.verify(manifest, sink: sink).found
            defer { last = found }
            try await Task.sleep(for: .seconds(1))
            return found == last && found > 0
        }
        let report = try Verifier.verify(manifest, sink: sink)
        #expect(report.duplicates == 0 && report.unexpected == 0, "\(report)")
        // The window: per crash, at most the ingest queue plus the open group (README).
        let queueCapacity = 10_000, readingsPerMessage = 5
        #expect(report.missing <= kills * queueCapacity * readingsPerMessage, "\(report)")
        #expect(report.missing % readingsPerMessage == 0, "losses are whole messages: \(report)")
        await agent.stop(signal: SIGTERM)
        await aggregator.stop(signal: SIGTERM)
        await broker.stop()
    }
}
