import Foundation
import Logging
import Testing
import TributaryAdminAPI
import TributarySQLite
import TributaryAgent
import TributaryCore
import TributaryMQTT
import TributarySimulator
import TributaryTesting
import TributaryCtl

@Suite("simulator -> mosquitto -> agent -> aggregator -> SQLite sink", .serialized)
struct PipelineTests {
    @Test("every published reading arrives exactly once, across an agent restart")
    func conservationAcrossAgentRestart() async throws {
        try await withHarness() { harness in
            let config = try harness.agentConfig()
            var agent = try await harness.startAgent(config)
            let epoch = agent.agent.buffer.epoch

            var options = SensorSimulator.Options(
                broker: try MQTTBroker(url: harness.broker.url), gatewayID: "gw-test", sensors: 25, rate: 800, count: 3000)
            options.seed = 7
            let simulator = SensorSimulator(options: options, logger: harness.logger)
            let publishing = Task { try await simulator.run() }

            // Restart the agent mid-stream: the broker keeps the session's messages meanwhile,
            // and the sealed batches in the buffer file carry over.
            try await Task.sleep(for: .seconds(1))
            try await agent.stop()
            try await Task.sleep(for: .milliseconds(500))
            agent = try await harness.startAgent(config)
            #expect(agent.agent.buffer.epoch == epoch, "the buffer file, and so the epoch, survives a restart")

            let manifest = try await publishing.value
            #expect(manifest.entries.count == 3000 * 5)
            var report = Verifier.Report()
            try await eventually("the sink holds every published reading") {
                report = try await Verifier.verify(manifest, sink: harness.sinkURL)
                return report.found >= manifest.entries.count
            }
            report = try await Verifier.verify(manifest, sink: harness.sinkURL)
            #expect(report.passed, "\(report)")
            #expect(report.missing == 0 && report.duplicates == 0)

            // The fleet view agrees with the sink, and shows nothing left behind.
            try await eventually("the fleet view shows every reading synced and no backlog") {
                let gateway = try await fetchFleet(harness).view.gateways.first { $0.gatewayID == "gw-test" }
                return gateway?.readingsSynced == UInt64(manifest.entries.count)
                    && gateway?.backlogReadings == 0 && gateway?.oldestUnsentMs == 0
            }
            try await agent.stop()
            #expect(agent.agent.buffer.snapshot.acknowledgedTotal == Int64(manifest.entries.count))
        }
    }

    @Test("undecodable payloads are quarantined and counted; the rest still flows")
    func quarantine() async throws {
        try await withHarness() { harness in
            let agent = try await harness.startAgent(try harness.agentConfig(gatewayID: "gw-q"))
            let publisher = try MQTTClient(
                broker: try MQTTBroker(url: harness.broker.url),
                options: .init(clientID: "test-publisher", cleanSession: true), handlers: .init(), logger: harness.logger)
            try publisher.start()
            try await eventually(timeout: .seconds(20), "publisher connects") { publisher.isConnected }
            let bad: [(String, String)] = [
                ("sensors/gw-q/s1", "{\"temperature\": 21.5,"),          // truncated JSON
                ("sensors/gw-q/s1", "{\"ts\": \"yesterday\", \"t\": 1}"), // bad timestamp
                ("site/gw-q/s2/temp", "warm"),                             // not a number
            ]
            let good: [(String, String)] = [
                ("sensors/gw-q/s1", "{\"ts\": 1700000000, \"temperature\": 21.5, \"ENERGY\": {\"Power\": 3}}"),
                ("site/gw-q/s2/temp", "22.25"),
            ]
            for (topic, payload) in bad + good {
                try publisher.publish(topic: topic, payload: Array(payload.utf8))
            }
            try await eventually("quarantine and sink see everything") {
                let view = try await fetchFleet(harness).view
                let g = view.gateways.first { $0.gatewayID == "gw-q" }
                return g?.readingsSynced == 3 && g?.quarantinedTotal == 3
            }
            let quarantined = try agent.agent.buffer.quarantinedPayloads()
            #expect(quarantined.map(\.topic) == bad.map(\.0))
            #expect(quarantined.map { String(decoding: $0.payload, as: UTF8.self) } == bad.map(\.1))
            #expect(quarantined[2].reason.contains("not a number"))
            publisher.stop()
            try await agent.stop()
        }
    }
}

/// Issue 23, item 3: a reading the aggregator's contract refuses (a 5,000-byte text, an empty
/// or a 300-byte JSON key) was sealed with 100 good ones, and the whole batch was set aside: 0
/// reached the sink. The agent now quarantines such a payload and seals the rest.
@Suite("readings within the aggregator's limits")
struct ReadingLimitTests {
    @Test("a payload the aggregator would refuse is quarantined with its reason; every other reading arrives")
    func outOfBoundsPayloadsAreQuarantined() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-limits", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let publisher = try MQTTClient(broker: try MQTTBroker(url: harness.broker.url),
                                       options: .init(clientID: "limits-publisher", cleanSession: true), handlers: .init(), logger: harness.logger)
        try publisher.start()
        try await eventually(timeout: .seconds(20), "the publisher connects") { publisher.isConnected }
        let base: Int64 = 1_790_000_000
        let bad = [
            "{\"ts\": \(base + 1000), \"note\": \"\(String(repeating: "x", count: 5000))\"}",
            "{\"ts\": \(base + 1001), \"\": 7}",
            "{\"ts\": \(base + 1002), \"\(String(repeating: "k", count: 300))\": 7}",
        ]
        var entries: [Manifest.Entry] = []
        for i in 0..<100 {
            try publisher.publish(topic: "sensors/gw-limits/s\(i % 4)", payload: Array("{\"ts\": \(base + Int64(i)), \"temperature\": \(i)}".utf8))
            entries.append(.init(gatewayID: "gw-limits", sensorID: "s\(i % 4)", metric: "temperature", timeMs: (base + Int64(i)) * 1000, value: .integer(Int64(i))))
            if i % 30 == 10 { try publisher.publish(topic: "sensors/gw-limits/s9", payload: Array(bad[i / 30].utf8)) }
        }
        let report = try await harness.verifyWhenComplete(Manifest(messagesPublished: 103, entries: entries))
        #expect(report.passed, "\(report)")
        let gateway = try #require(try await harness.gateway())
        #expect(gateway.setAsideBatches == 0 && gateway.quarantinedTotal == 3, "\(gateway)")
        let db = try SQLiteDatabase(path: harness.dir.file("agent/buffer.sqlite"), readOnly: true)
        let reasons = try db.withConnection { c throws(SQLiteError) in
            try c.query("SELECT reason FROM quarantine ORDER BY id").compactMap { $0[0].string }
        }
        db.close()
        #expect(reasons.count == 3 && reasons[0].contains("text value of 5000 bytes") && reasons[1].contains("metric name is empty")
                && reasons[2].contains("metric name has 300 bytes"), "\(reasons)")
        publisher.stop()
        await harness.stop(agent, aggregator)
    }
}

func fetchFleet(_ harness: Harness) async throws -> (view: FleetView, json: Data) {
    let token = try String(contentsOfFile: harness.directory.file("aggregator/admin-token"), encoding: .utf8)
    return try await FleetClient(aggregator: harness.aggregatorURL, token: token.trimmingCharacters(in: .whitespacesAndNewlines),
                                 tls: harness.clientTLS).fleet()
}
