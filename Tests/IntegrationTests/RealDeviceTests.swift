import Foundation
import Testing
import TributaryAgent
import TributaryBuffer
import TributaryCore
import TributaryMQTT
import TributarySinks
import TributaryTesting

/// What stock firmware sends, through a real broker, agent and aggregator.
@Suite("real devices")
struct RealDeviceTests {
    /// Tasmota's `Time` without SetOption52 is the device's local wall time with no zone. With
    /// the subscription's `time_zone`, each reading is stored at its true UTC time; the plug
    /// without one is quarantined whole, as before, and said why.
    @Test("a zone-less Tasmota Time is stored at the right UTC time with time_zone; without it the message is quarantined")
    func tasmotaLocalTime() async throws {
        try await withHarness() { harness in
            var config = try harness.agentConfig(gatewayID: "gw-tasmota")
            var shanghai = AgentConfig.Subscription(topic: "tele/+/SENSOR", template: try TopicTemplate("tele/{sensor}/SENSOR"),
                                                    format: .json, timeField: "Time")
            shanghai.timeZone = try PayloadTimeZone("Asia/Shanghai")
            let unset = AgentConfig.Subscription(topic: "plain/+/SENSOR", template: try TopicTemplate("plain/{sensor}/SENSOR"),
                                                 format: .json, timeField: "Time")
            config.mqtt.subscriptions = [shanghai, unset]
            _ = try await harness.startAgent(config)
            let publisher = try MQTTClient(broker: try MQTTBroker(url: harness.broker.url),
                                           options: .init(clientID: "tasmota", cleanSession: true), handlers: .init(), logger: harness.logger)
            try publisher.start()
            defer { publisher.stop() }
            try await eventually(timeout: .seconds(20), "publisher connects") { publisher.isConnected }
            // Stock Tasmota 13 tele/…/SENSOR, as sent (no zone on Time).
            let payload = #"{"Time":"2026-12-05T14:32:51","ENERGY":{"TotalStartTime":"2026-11-01T09:00:00","Total":12.345,"Power":130,"Voltage":231}}"#
            try publisher.publish(topic: "tele/plug-7/SENSOR", payload: Array(payload.utf8))
            try publisher.publish(topic: "plain/plug-8/SENSOR", payload: Array(payload.utf8))

            try await eventually("the sink holds plug-7's readings") {
                try await fetchFleet(harness).view.gateways.first { $0.gatewayID == "gw-tasmota" }?.readingsSynced == 4
            }
            // 14:32:51 in Shanghai (+08:00) is 06:32:51 UTC.
            let expected = try Timestamp.epochMs(fromISO8601: "2026-12-05T06:32:51Z")
            var rows: [StoredReading] = []
            try SQLiteSink.Reader(path: harness.directory.file("aggregator/sink.sqlite")).forEachReading { rows.append($0) }
            #expect(rows.count == 4 && rows.allSatisfy { $0.sensorID == "plug-7" && $0.timeMs == expected }, "\(rows.map { ($0.sensorID, $0.metric, $0.timeMs) })")
            try await eventually("plug-8's message is quarantined, with the reason") {
                try await fetchFleet(harness).view.gateways.first { $0.gatewayID == "gw-tasmota" }?.quarantinedTotal == 1
            }
            let held = try BufferReader(path: config.bufferPath).quarantineKinds()
            #expect(held.count == 1 && held[0].count == 1 && held[0].example.contains("has no zone") && held[0].example.contains("time_zone"),
                    "\(held)")
        }
    }
}
