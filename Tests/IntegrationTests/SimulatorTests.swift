import Foundation
import Logging
import Testing
import TributaryMQTT
import TributarySimulator
import TributaryTesting

@Suite("sensor simulator")
struct SimulatorTests {
    /// Far above what the loop can pace, so it publishes in bursts: each sensor's readings still
    /// carry strictly increasing times. Two messages of one sensor in one millisecond could
    /// otherwise be byte-identical, which the agent rightly takes for a QoS 1 redelivery, while
    /// the manifest counted both (this made conservation tests fail now and then in CI).
    @Test("a burst never stamps one sensor twice with the same time")
    func timesStrictlyIncreasePerSensor() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let broker = try await MosquittoBroker(directory: dir.path)
        defer { Task { await broker.stop() } }
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let simulator = SensorSimulator(options: .init(broker: try MQTTBroker(url: broker.url), gatewayID: "gw-burst",
                                                       sensors: 2, rate: 1_000_000, count: 4000), logger: logger)
        let manifest = try await simulator.run()
        var last: [String: Int64] = [:]
        for entry in manifest.entries where entry.metric == "temperature" {
            let time = try #require(entry.timeMs)
            #expect(time > last[entry.sensorID, default: 0], "\(entry.sensorID) at \(time)")
            last[entry.sensorID] = time
        }
        #expect(last.count == 2)
    }
}

/// Every device kind and every fault through the real parts: broker, agent, aggregator, sink.
@Suite("sensor simulator end to end", .serialized)
struct SimulatorPipelineTests {
    /// Plug, environment, meter, plain numbers and Sparkplug B, with malformed payloads,
    /// duplicate publishes, out-of-order messages, skewed clocks and silent sensors: the sink
    /// holds every reading once, the agent's quarantine exactly the malformed messages, and
    /// the Sparkplug sequence gaps the reordering causes bring a rebirth the simulator answers.
    @Test func mixedFleetWithEveryFaultIsConserved() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-mixed")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: harness.broker.url), gatewayID: harness.gatewayID,
                                              sensors: 40, rate: 800, count: 4000)
        options.kinds = DeviceKind.allCases
        options.jitter = 0.3
        options.burst = .init(factor: 3, lengthMs: 500, everyMs: 2000)
        options.seed = 42
        options.faults.malformedShare = 0.02
        options.faults.duplicateShare = 0.03
        options.faults.outOfOrderShare = 0.01
        options.faults.clockSkewMs = 120_000
        options.faults.silentShare = 0.1
        let manifest = try await SensorSimulator(options: options, logger: harness.logger).run()
        #expect(manifest.quarantined.values.reduce(0, +) > 0 && manifest.duplicatesPublished > 0)
        #expect(manifest.outOfOrder > 0 && !manifest.silentSensors.isEmpty)

        let report = try await harness.verifyWhenComplete(manifest)
        let buffer = harness.dir.file("agent/buffer.sqlite")
        let withQuarantine = try await Verifier.verify(manifest, sink: harness.sink, agentBuffers: [buffer])
        #expect(report.passed && withQuarantine.passed, "\(withQuarantine)")
        #expect(withQuarantine.quarantineFound == manifest.quarantined.values.reduce(0, +))
        #expect(manifest.entries.contains { $0.sensorID.hasPrefix("sensors/gw-mixed/") }, "Sparkplug devices are named group/edge node/device")
        #expect(manifest.entries.contains { $0.timeMs == nil }, "plain numbers carry no time")
        // Reordered Sparkplug messages are sequence gaps; the agent asked for a rebirth and got one.
        #expect(harness.agentLog.contains("sparkplug: rebirth requested"))
        // The first quarantine of each kind of reason is a warning in the agent's log; not one
        // line per malformed payload.
        let warned = harness.agentLog.split(separator: "\n").filter { $0.contains("the first for this reason") }.count
        let malformed = manifest.quarantined.values.reduce(0, +)
        #expect(warned >= 1 && warned < malformed, "\(warned) warnings for \(malformed) malformed payloads")
        // The operator sees why, by kind, from the aggregator: `tributaryctl gateway ID`.
        let reasons = try #require(try await harness.gateway()?.quarantineReasons, "the status carries the quarantine's reasons")
        let counted = reasons.reduce(0) { $0 + $1.count }
        #expect(!reasons.isEmpty && counted >= 1 && counted <= UInt64(malformed), "\(reasons)")
        let detail = try await OperatorTests.ctl(harness, ["gateway", harness.gatewayID])
        #expect(detail.output.contains("quarantined, by reason") && detail.output.contains(reasons[0].kind), "\(detail.output)")
        await harness.stop(agent, aggregator)
    }

    /// Sparkplug B edge nodes publishing while the agent restarts: the broker keeps their DDATA
    /// for the agent's session, and the agent, which saved what the births defined in its
    /// buffer, decodes it at once: nothing quarantined, no rebirth needed, every reading once.
    @Test func sparkplugSessionsSurviveAnAgentRestart() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-spb")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: harness.broker.url), gatewayID: harness.gatewayID,
                                              sensors: 8, rate: 200, count: 1200)
        options.kinds = [.sparkplug]
        let publishing = Task { [options, logger = harness.logger] in try await SensorSimulator(options: options, logger: logger).run() }
        try await eventually("the first Sparkplug readings reach the sink") { try await harness.gateway()?.readingsSynced ?? 0 > 0 }
        await agent.stop(signal: SIGTERM)
        try await Task.sleep(for: .seconds(1))  // DDATA piles up in the broker meanwhile
        agent = try await harness.startAgent()
        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest)
        let withQuarantine = try await Verifier.verify(manifest, sink: harness.sink, agentBuffers: [harness.dir.file("agent/buffer.sqlite")])
        #expect(report.passed && withQuarantine.passed && withQuarantine.quarantineFound == 0, "\(withQuarantine)")
        #expect(!harness.agentLog.contains("rebirth requested"), "the saved sessions decoded the backlog")
        await harness.stop(agent, aggregator)
    }

    /// `tributary-sim sensors` twice with one seed and start time: byte-identical manifests.
    @Test func theCommandLineRepeatsARunExactly() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let broker = try await MosquittoBroker(directory: dir.path)
        defer { Task { await broker.stop() } }
        let sim = try ProcessHarness.executable("tributary-sim")
        var manifests: [String] = []
        for run in 1...2 {
            let path = dir.file("manifest-\(run).jsonl")
            let (code, output) = try await ProcessHarness.run(sim, [
                "sensors", "--broker", broker.url, "--gateway", "gw-repeat", "--sensors", "25", "--format", "mixed",
                "--rate", "5000", "--count", "1500", "--seed", "99", "--start-ms", "1795000000000", "--jitter", "0.4",
                "--burst", "3x1s/4s", "--malformed", "0.05", "--duplicates", "0.05", "--out-of-order", "0.05",
                "--clock-skew", "30s", "--silent", "0.1", "--manifest", path,
            ], in: dir.path)
            #expect(code == 0, "\(output)")
            #expect(output.contains("published") && output.contains("malformed") && output.contains("silent"))
            manifests.append(try String(contentsOfFile: path, encoding: .utf8))
        }
        #expect(manifests[0] == manifests[1])
        #expect(manifests[0].contains("\"quarantine\"") && manifests[0].contains("\"silent\""))

        let (code, output) = try await ProcessHarness.run(sim, ["sensors", "--gateway", "g", "--manifest", "m", "--count", "1", "--format", "xml"], in: dir.path)
        #expect(code != 0 && output.contains("unknown kind 'xml'"), "\(output)")
    }
}
