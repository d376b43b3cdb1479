import Foundation
import Testing
import TributaryCore
import TributaryTesting
@testable import TributaryWire

/// The shape check before decoding refuses bodies that would decode into too many elements,
/// and never an honest batch, even one of the most string-hungry kind at the reading limit.
@Suite("wire shape")
struct WireShapeTests {
    static func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] { ProtobufBytes.field(number, payload) }

    @Test func honestBatchesAtTheLimitPass() throws {
        // Every reading its own series with its own sensor, metric, topic, unit, text and labels.
        let readings = (0..<2000).map { i in
            Reading(gatewayID: "gw", sensorID: "s\(i)", metric: "m\(i)", topic: "t/\(i)", timeMs: Int64(i), receivedAtMs: Int64(i),
                    value: .text("v\(i)"), unit: "u\(i)", labels: ["k\(i)": "l\(i)", "site": "x\(i)", "line": "y\(i)"])
        }
        try Self.check(readings)
        // And every reading in one dense series.
        try Self.check((0..<2000).map { i in
            Reading.sample(sensor: "same", metric: "n", timeMs: Int64(i), value: .double(Double(i) + 0.5))
        })
    }

    static func check(_ readings: [Reading]) throws {
        var request = Tributary_V1_SyncRequest()
        request.batch = BatchCodec.encode(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: 1), readings: readings, sealedAtMs: 1)
        try WireShape.check(try request.serializedBytes(), maxElements: readings.count)
    }

    @Test func bodiesThatWouldDecodeHugeAreRefused() {
        let packed = Self.field(1, Self.field(4, Self.field(10, [UInt8](repeating: 0, count: 5000))))
        #expect(throws: WireShape.TooMany(field: "series field 10", count: 5000, limit: 1000)) { try WireShape.check(packed, maxElements: 1000) }
        // Not packed: one field per element counts the same.
        let unpacked = Self.field(1, Self.field(4, (0..<2000).flatMap { _ in [UInt8(10 << 3), 0] }))
        #expect(throws: WireShape.TooMany.self) { try WireShape.check(unpacked, maxElements: 1000) }
        let strings = Self.field(1, (0..<20_000).flatMap { _ in [UInt8(3 << 3 | 2), 0] })
        #expect(throws: WireShape.TooMany.self) { try WireShape.check(strings, maxElements: 1000) }
        // Split over many `batch` fields, which the decoder merges into one.
        let split = (0..<20).flatMap { _ in Self.field(1, Self.field(4, Self.field(10, [UInt8](repeating: 0, count: 999)))) }
        #expect(throws: WireShape.TooMany.self) { try WireShape.check(split, maxElements: 1000) }
        // Many series of a column each: the total counts.
        let many = Self.field(1, (0..<900).flatMap { _ in Self.field(4, Self.field(10, [UInt8](repeating: 0, count: 999))) })
        #expect { try WireShape.check(many, maxElements: 1000) } throws: { ($0 as? WireShape.TooMany)?.field == "reading columns" }
        // Bytes it cannot read are left to the decoder.
        #expect(throws: Never.self) { try WireShape.check([0xFF, 0xFF, 0xFF], maxElements: 1) }
    }
}
