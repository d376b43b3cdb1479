import Foundation
import Testing
import TributaryCore
import TributaryMQTT
import TributarySQLite
import TributarySimulator
import TributaryTesting

/// Retained MQTT messages: a topic's last-known value, which the broker sends to every new
/// subscription. Stored once, however often the agent or the broker restarts.
@Suite("retained messages", .serialized)
struct RetainedMessageTests {
    /// Issue 23, item 5: 10 retained messages published once were 10 rows in the sink, 20
    /// after an agent restart and 25 after a broker restart: the agent subscribed again on every
    /// connect although the broker's session held the subscriptions, and stored what came back.
    @Test("retained messages are stored once across agent and broker restarts and a new client id; a removed filter is unsubscribed")
    func retainedMessagesAreStoredOnce() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-retained", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let publisher = try MQTTClient(broker: try MQTTBroker(url: harness.broker.url),
                                       options: .init(clientID: "retained-publisher", cleanSession: true), handlers: .init(), logger: harness.logger)
        try publisher.start()
        try await eventually(timeout: .seconds(20), "the publisher connects") { publisher.isConnected }
        var manifest = Manifest(messagesPublished: 10, entries: [])
        for i in 0..<10 {
            try publisher.publish(topic: "sensors/gw-retained/s\(i)/level", payload: Array("\(40 + i).5".utf8), retain: true)
            manifest.entries.append(.init(gatewayID: "gw-retained", sensorID: "s\(i)", metric: "level", timeMs: nil, value: .double(40.5 + Double(i))))
        }
        #expect(try await harness.verifyWhenComplete(manifest).passed)
        publisher.stop()

        func connects() -> Int { harness.agentLog.components(separatedBy: "MQTT connected").count }
        // The agent restarts: the broker's session holds its subscriptions, so nothing is sent again.
        await agent.stop(signal: SIGTERM)
        agent = try await harness.startAgent()
        var report = try await harness.verifyWhenSettled(manifest)
        #expect(report.passed, "after an agent restart: \(report)")

        // The broker restarts, sessions and retained messages kept in its persistence file.
        let before = connects()
        await harness.broker.stop()
        try await harness.broker.start()
        try await eventually(timeout: .seconds(30), "the agent reconnects") { connects() > before }
        report = try await harness.verifyWhenSettled(manifest)
        #expect(report.passed, "after a broker restart: \(report)")

        // A new client id is a new session: everything is subscribed, and the retained messages
        // come with it. Each is what its topic last brought, so none is stored again.
        await agent.stop(signal: SIGTERM)
        var yaml = try String(contentsOfFile: harness.dir.file("agent.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "  keepalive_seconds: 5\n", with: "  keepalive_seconds: 5\n  client_id: gw-retained-second\n")
        try yaml.write(toFile: harness.dir.file("agent.yaml"), atomically: true, encoding: .utf8)
        agent = try await harness.startAgent()
        report = try await harness.verifyWhenSettled(manifest)
        #expect(report.passed, "with a new client id: \(report)")
        #expect(harness.agentLog.contains("retained MQTT message already stored"))

        // A filter removed from the configuration is taken out of the broker's session too.
        await agent.stop(signal: SIGTERM)
        yaml = yaml.replacingOccurrences(of: "      - topic: \"spBv1.0/sensors/#\"\n        format: sparkplug\n", with: "")
        try yaml.write(toFile: harness.dir.file("agent.yaml"), atomically: true, encoding: .utf8)
        agent = try await harness.startAgent()
        #expect(harness.agentLog.contains("unsubscribing from a filter no longer configured"), "\(ProcessHarness.tail(harness.dir.file("agent.log")))")
        await harness.stop(agent, aggregator)
    }

    /// Two topics that differ only in how `é` is written (one scalar, or `e` and U+0301) are two
    /// topics to the broker. Keyed by String, the agent took the second's retained value for
    /// the first's and lost it, and after a new client id stored both again.
    @Test("retained values of two topics that Swift's == takes as one are each stored once")
    func canonicallyEquivalentTopics() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-nfd", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let publisher = try MQTTClient(broker: try MQTTBroker(url: harness.broker.url),
                                       options: .init(clientID: "retained-publisher", cleanSession: true), handlers: .init(), logger: harness.logger)
        try publisher.start()
        try await eventually(timeout: .seconds(20), "the publisher connects") { publisher.isConnected }
        for sensor in ["caf\u{00E9}", "cafe\u{0301}"] {
            try publisher.publish(topic: "sensors/gw-nfd/\(sensor)/level", payload: Array("21.5".utf8), retain: true)
        }
        try await Task.sleep(for: .milliseconds(500))
        publisher.stop()

        func sensors() throws -> [SQLiteValue] {
            let db = try SQLiteDatabase(path: harness.sinkPath, readOnly: true)
            defer { db.close() }
            return try db.withConnection { c throws(SQLiteError) in
                try c.query("SELECT hex(sensor_id) FROM readings WHERE gateway_id = 'gw-nfd' ORDER BY 1").map { $0[0] }
            }
        }
        let both: [SQLiteValue] = [.text("63616665CC81"), .text("636166C3A9")]
        // The first subscription brings both retained values: both are stored.
        var agent = try await harness.startAgent()
        try await eventually(timeout: .seconds(30), "both retained values are in the sink") { (try? sensors()) == both }

        // A new client id: both come again, each what its own topic last brought.
        await agent.stop(signal: SIGTERM)
        var yaml = try String(contentsOfFile: harness.dir.file("agent.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "  keepalive_seconds: 5\n", with: "  keepalive_seconds: 5\n  client_id: gw-nfd-second\n")
        try yaml.write(toFile: harness.dir.file("agent.yaml"), atomically: true, encoding: .utf8)
        agent = try await harness.startAgent()
        try await eventually(timeout: .seconds(30), "both come again and are recognised") {
            harness.agentLog.components(separatedBy: "retained MQTT message already stored").count - 1 == 2
        }
        try await Task.sleep(for: .seconds(1))
        #expect(try sensors() == both)
        await harness.stop(agent, aggregator)
    }
}
