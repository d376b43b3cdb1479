import Logging
import Testing
import TributaryBuffer
import TributaryCore
import TributaryMQTT
import TributaryTesting
@testable import TributaryAgent

@Suite("buffer admission at the quota")
struct BufferAdmissionTests {
    /// A buffer whose own keeping (here quarantined payloads, which only an operator removes)
    /// fills the quota, with nothing waiting for an aggregator: no acknowledgement can ever
    /// free a page, so `block` must not wait (it did, for good: 15,000 readings held back in the
    /// FaultTests quota test, by the saved redelivery window then).
    @Test func nothingToDeliverMeansNothingToWaitFor() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (buffer, admission) = try Self.admission(dir)
        try Self.quarantine(buffer)
        #expect(try buffer.quotaBytesInUse() >= 65_536, "the buffer's own keeping fills the quota")
        var admitting = admission
        var askedToStop = 0
        admitting.waitForRoom(isShuttingDown: { askedToStop += 1; return askedToStop > 2 })
        #expect(askedToStop == 0, "returned at once, without waiting")
    }

    /// With readings waiting for an aggregator, the same buffer waits for their delivery.
    @Test func readingsToDeliverAreWaitedFor() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (buffer, admission) = try Self.admission(dir)
        try Self.quarantine(buffer)
        try buffer.append([Reading(gatewayID: "gw", sensorID: "s", metric: "m", topic: "t", timeMs: 1, receivedAtMs: 1, value: .double(1))],
                          quarantined: [])
        var admitting = admission
        var askedToStop = 0
        admitting.waitForRoom(isShuttingDown: { askedToStop += 1; return askedToStop > 2 })
        #expect(askedToStop == 3, "waited until told the agent stops")
    }

    /// The redelivery window a stop saved stays in the file (a run killed before its own stop,
    /// then a broker's replay, needs it) but does not count against the quota: counted, 1-2 MB
    /// of it made `drop_oldest` drop nearly every reading of the next run under a small quota.
    @Test func theSavedWindowDoesNotCountAgainstTheQuota() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (buffer, admission) = try Self.admission(dir)
        try buffer.setRedeliveryWindow([UInt8](repeating: 7, count: 3_000 * 16))
        try buffer.append([Reading(gatewayID: "gw", sensorID: "s", metric: "m", topic: "t", timeMs: 1, receivedAtMs: 1, value: .double(1))],
                          quarantined: [])
        #expect(try buffer.sizeBytes() >= 65_536 && buffer.quotaBytesInUse() < 65_536)
        #expect(try buffer.redeliveryWindow().count == 3_000 * 16, "kept in the file")
        var admitting = admission
        var askedToStop = 0
        admitting.waitForRoom(isShuttingDown: { askedToStop += 1; return askedToStop > 2 })
        #expect(askedToStop == 0, "below the quota: no wait, nothing dropped")
    }

    static func quarantine(_ buffer: BufferStore) throws {
        try buffer.append([], quarantined: (0..<80).map { i in
            QuarantinedPayload(topic: "bad/\(i)", payload: [UInt8](repeating: 0x41, count: 1_000), reason: "invalid JSON", receivedAtMs: 1)
        })
    }

    static func admission(_ dir: TemporaryDirectory) throws -> (BufferStore, BufferAdmission) {
        var settings = AgentConfig.Buffer()
        settings.maxBytes = 65_536
        let config = AgentConfig(gatewayID: "gw", dataDirectory: dir.path,
                                 mqtt: .init(broker: try MQTTBroker(url: "mqtt://127.0.0.1:1883"), subscriptions: []),
                                 buffer: settings, aggregator: .init(url: "http://127.0.0.1:1"))
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        return (buffer, BufferAdmission(config: config, buffer: buffer, stats: AgentStats(), logger: Logger(label: "test")))
    }
}
