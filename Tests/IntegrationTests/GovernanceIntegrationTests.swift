import Foundation
import Testing
import TributaryAgent
import TributaryCore
import TributaryCrypto
import TributaryMQTT
import TributarySQLite
import TributaryTesting

/// Governance rules end to end: a real agent drops, masks and hashes fields and tags every
/// reading with its classification before buffering, so the sink never holds a raw value;
/// what was withheld on purpose is counted in the fleet view.
@Suite("governance at the edge")
struct GovernanceIntegrationTests {
    @Test("the sink never sees a raw protected value; pseudonyms are stable; drops are counted, not lost")
    func rulesApplyBeforeTheBatchLeaves() async throws {
        try await withHarness() { harness in
            let key = Array("site-key-0123456789abcdef".utf8)
            var config = try harness.agentConfig(gatewayID: "gw-gov")
            config.hashKey = key
            config.mqtt.subscriptions[0].policy = SubscriptionPolicy(classification: .important, rules: [
                .init(match: "secret", action: .drop), .init(match: "owner.name", action: .mask), .init(match: "owner.*", action: .hash),
            ])
            let agent = try await harness.startAgent(config)
            let publisher = try MQTTClient(
                broker: try MQTTBroker(url: harness.broker.url),
                options: .init(clientID: "gov-publisher", cleanSession: true), handlers: .init(), logger: harness.logger)
            try publisher.start()
            try await eventually(timeout: .seconds(20), "publisher connects") { publisher.isConnected }
            let phones = ["+86 139 0000 0001", "+86 139 0000 0002"]
            for i in 0..<20 {
                let payload = """
                    {"ts": \(1_700_000_000 + i), "temperature": \(20 + i), "secret": "pin-\(i)",
                     "owner": {"name": "Li Wei", "phone": "\(phones[i % 2])"}}
                    """
                try publisher.publish(topic: "sensors/gw-gov/meter\(i % 2)", payload: Array(payload.utf8))
            }
            // Five more, each sent twice: the agent takes the second as a QoS 1 redelivery and
            // takes back exactly what the first kept, no more (nor counts its secret twice).
            for i in 20..<25 {
                let payload = """
                    {"ts": \(1_700_000_000 + i), "temperature": \(20 + i), "secret": "pin-\(i)",
                     "owner": {"name": "Li Wei", "phone": "\(phones[i % 2])"}}
                    """
                for _ in 0..<2 { try publisher.publish(topic: "sensors/gw-gov/meter\(i % 2)", payload: Array(payload.utf8)) }
            }
            try await eventually("the sink holds every kept reading") {
                try await fetchFleet(harness).view.gateways.first { $0.gatewayID == "gw-gov" }?.readingsSynced == 75
            }
            try await Task.sleep(for: .milliseconds(500))
            let gateway = try #require(try await fetchFleet(harness).view.gateways.first { $0.gatewayID == "gw-gov" })
            #expect(gateway.readingsSynced == 75 && gateway.redeliveriesTotal == 5, "\(gateway)")
            #expect(gateway.withheldTotal == 25, "the 25 secrets were withheld, and counted once")

            let db = try SQLiteDatabase(path: harness.directory.file("aggregator/sink.sqlite"), readOnly: true)
            defer { db.close() }
            let rows = try db.withConnection { c throws(SQLiteError) -> [(String, String, String)] in
                var rows: [(String, String, String)] = []
                try c.forEach("SELECT metric, coalesce(value_text, CAST(value AS TEXT)), coalesce(labels, '') FROM readings WHERE gateway_id = 'gw-gov'") { row in
                    rows.append((row.string(0) ?? "", row.string(1) ?? "", row.string(2) ?? ""))
                }
                return rows
            }
            #expect(rows.count == 75)
            let everything = rows.map { "\($0.0) \($0.1) \($0.2)" }.joined(separator: "\n")
            for raw in phones + ["Li Wei", "pin-"] { #expect(!everything.contains(raw), "the sink holds \(raw)") }
            #expect(!rows.contains { $0.0 == "secret" })
            #expect(rows.filter { $0.0 == "owner.name" }.allSatisfy { $0.1 == "***" })
            let pseudonymizer = Pseudonymizer(key: key)
            let hashed = Set(rows.filter { $0.0 == "owner.phone" }.map(\.1))
            #expect(hashed == Set(phones.map(pseudonymizer.pseudonym)), "one stable pseudonym per phone: \(hashed)")
            #expect(rows.allSatisfy { $0.2.contains("\"classification\":\"important\"") }, "\(rows.prefix(2))")
            publisher.stop()
            try await agent.stop()
        }
    }
}
