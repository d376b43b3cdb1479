import Foundation
import Testing
import TributaryCore
import TributaryMQTT
import TributarySimulator
import TributaryTesting

/// A gateway's buffer file rolled back to an earlier state: an SD-card image or VM snapshot
/// restored, or a power cut that undid seals the aggregator had already written.
@Suite("buffer rollback", .serialized)
struct RollbackTests {
    /// Issue 23, item 4: after the rollback the buffer sealed new readings under identities
    /// the aggregator already held (batches 2-6 in the review): 409, set aside, 100 readings
    /// never delivered. Now the agent starts a new epoch and seals them again.
    @Test("a buffer file put back to an earlier copy: new readings get a new epoch and all arrive, once")
    func restoredBufferStartsANewEpoch() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-rollback",
                                               aggregatorSettings: ["batch_max_readings: 20", "batch_max_age_ms: 100", "retry_initial_ms: 50", "retry_max_ms: 500"])
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let publisher = try MQTTClient(broker: try MQTTBroker(url: harness.broker.url),
                                       options: .init(clientID: "rollback-publisher", cleanSession: true), handlers: .init(), logger: harness.logger)
        try publisher.start()
        try await eventually(timeout: .seconds(20), "the publisher connects") { publisher.isConnected }
        var manifest = Manifest(messagesPublished: 0, entries: [])
        func publish(_ round: Int) async throws {
            for i in 0..<100 {
                let ts = 1_790_000_000 + Int64(round * 1000 + i)
                try publisher.publish(topic: "sensors/gw-rollback/s\(i % 5)", payload: Array("{\"ts\": \(ts), \"level\": \(i)}".utf8))
                manifest.entries.append(.init(gatewayID: "gw-rollback", sensorID: "s\(i % 5)", metric: "level", timeMs: ts * 1000, value: .integer(Int64(i))))
                manifest.messagesPublished += 1
            }
            #expect(try await harness.verifyWhenComplete(manifest).passed)
        }
        let buffer = harness.dir.file("agent/buffer.sqlite"), copy = harness.dir.file("buffer-copy")
        try await publish(1)
        await agent.stop(signal: SIGTERM)
        try Self.copyBuffer(from: buffer, to: copy)
        agent = try await harness.startAgent()
        try await publish(2)  // five more batches, which the copy knows nothing of
        await agent.stop(signal: SIGTERM)
        try Self.copyBuffer(from: copy, to: buffer)
        agent = try await harness.startAgent()
        try await publish(3)  // sealed under the identities of round 2's batches
        let report = try await harness.verifyWhenSettled(manifest)
        #expect(report.passed, "\(report)")
        let gateway = try #require(try await harness.gateway())
        #expect(gateway.setAsideBatches == 0, "\(gateway)")
        #expect(gateway.lastError.contains("rolled back"), "\(gateway.lastError)")
        #expect(harness.agentLog.contains("resealed under a new epoch"))
        publisher.stop()
        await harness.stop(agent, aggregator)
    }

    /// The buffer file and its WAL, as a backup tool or an image restore would put them.
    static func copyBuffer(from source: String, to destination: String) throws {
        for suffix in ["", "-wal", "-shm"] {
            try? FileManager.default.removeItem(atPath: destination + suffix)
            if FileManager.default.fileExists(atPath: source + suffix) {
                try FileManager.default.copyItem(atPath: source + suffix, toPath: destination + suffix)
            }
        }
    }
}
