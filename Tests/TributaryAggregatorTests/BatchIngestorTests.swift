import Foundation
import Logging
import Testing
import TributaryCore
import TributarySQLite
import TributaryTesting
import TributaryWire
@testable import TributaryAggregator
@testable import TributarySinks

@Suite("batch ingestion into the SQLite sink")
struct BatchIngestorTests {
    struct Fixture {
        let dir: TemporaryDirectory
        let sink: SQLiteSink
        let ingestor: BatchIngestor

        init(limits: AggregatorConfig.Limits = .init()) throws {
            dir = try TemporaryDirectory()
            sink = try SQLiteSink(path: dir.file("sink.sqlite"))
            let registry = try FleetRegistry(path: dir.file("registry.sqlite"))
            ingestor = BatchIngestor(sink: sink, registry: registry, limits: limits, logger: Logger(label: "test"))
        }

        func rowCount() throws -> Int64 {
            let db = try SQLiteDatabase(path: dir.file("sink.sqlite"), readOnly: true)
            defer { db.close() }
            return try db.withConnection { c throws(SQLiteError) in try c.scalar("SELECT count(*) FROM readings")?.int64 ?? -1 }
        }
    }

    static func request(sequence: UInt64 = 1, readings: Int = 20, gateway: String = "gw-1", value: Double = 1) throws -> [UInt8] {
        let rs = (0..<readings).map {
            Reading.sample(gateway: gateway, timeMs: Int64($0), value: .double(value))
        }
        var request = Tributary_V1_SyncRequest()
        request.batch = BatchCodec.encode(identity: .init(gatewayID: gateway, epoch: "e", sequence: sequence), readings: rs, sealedAtMs: 0)
        request.status.gatewayID = gateway
        return try request.serializedBytes()
    }

    @Test func acceptsOnceThenAnswersDuplicate() async throws {
        let f = try Fixture()
        defer { f.dir.remove() }
        let body = Compression.compress(try Self.request(), encoding: .zstd)
        let first = await f.ingestor.handle(body: body, contentType: WireProtocol.protobufContentType, contentEncoding: "zstd")
        #expect(first.httpStatus == 200 && first.ack.outcome == .accepted && first.ack.readingCount == 20)
        let again = await f.ingestor.handle(body: body, contentType: WireProtocol.protobufContentType, contentEncoding: "zstd")
        #expect(again.httpStatus == 200 && again.ack.outcome == .duplicate)
        #expect(try f.rowCount() == 20, "a resend is written once")
    }

    @Test func sameIdentityOtherContentsIsAConflict() async throws {
        let f = try Fixture()
        defer { f.dir.remove() }
        _ = await f.ingestor.handle(body: try Self.request(value: 1), contentType: WireProtocol.protobufContentType, contentEncoding: nil)
        let other = await f.ingestor.handle(body: try Self.request(value: 2), contentType: WireProtocol.protobufContentType, contentEncoding: nil)
        #expect(other.httpStatus == 409 && other.ack.outcome == .rejected)
        #expect(try f.rowCount() == 20)
    }

    static let badRequests: [(String, [UInt8], String?, String?, Int)] = [
        ("wrong content type", [1, 2, 3], "application/json", nil, 415),
        ("unknown encoding", [1, 2, 3], WireProtocol.protobufContentType, "br", 415),
        ("random bytes", [0xFF, 0xFF, 0xFF, 0x01, 0x02], WireProtocol.protobufContentType, nil, 400),
        ("corrupt gzip", [0x1F, 0x8B, 0x08, 0x00, 0x01], WireProtocol.protobufContentType, "gzip", 400),
        ("decompression bomb", Compression.compress([UInt8](repeating: 0, count: 8 << 20), encoding: .zstd), WireProtocol.protobufContentType, "zstd", 413),
        ("no status", [], WireProtocol.protobufContentType, nil, 400),
    ]

    @Test(arguments: badRequests.indices)
    func badRequestsGetAClearErrorAndWriteNothing(_ index: Int) async throws {
        let (name, body, type, encoding, status) = Self.badRequests[index]
        var limits = AggregatorConfig.Limits()
        limits.maxDecompressedBytes = 1 << 20
        let f = try Fixture(limits: limits)
        defer { f.dir.remove() }
        let response = await f.ingestor.handle(body: body, contentType: type, contentEncoding: encoding)
        #expect(response.httpStatus == status, "\(name): \(response.ack.reason)")
        #expect(!response.ack.reason.isEmpty, "\(name) must say why")
        #expect(try f.rowCount() == 0)
    }

    @Test func batchForAnotherGatewayIsRefused() async throws {
        let f = try Fixture()
        defer { f.dir.remove() }
        var request = try Tributary_V1_SyncRequest(serializedBytes: try Self.request())
        request.status.gatewayID = "gw-2"
        let response = await f.ingestor.handle(body: try request.serializedBytes(), contentType: WireProtocol.protobufContentType, contentEncoding: nil)
        #expect(response.httpStatus == 400)
        #expect(try f.rowCount() == 0)
    }

    @Test func admissionBoundsBatchesAndBytesInFlight() async throws {
        var limits = AggregatorConfig.Limits()
        limits.maxInFlightBatches = 2
        limits.maxInFlightBytes = 1000
        let f = try Fixture(limits: limits)
        defer { f.dir.remove() }
        let (gate, open) = AsyncStream<Void>.makeStream()
        let (started, starting) = AsyncStream<Void>.makeStream()
        let held = Task {
            await f.ingestor.admitted(declaredBytes: 600) {
                starting.yield()
                for await _ in gate { break }
                return f.ingestor.refusal(200, reason: "held")
            }
        }
        for await _ in started { break }
        // 600 + 600 bytes would pass the byte bound: refused, with a Retry-After.
        let overBytes = await f.ingestor.admitted(declaredBytes: 600) { f.ingestor.refusal(200, reason: "ran") }
        #expect(overBytes.httpStatus == 429 && overBytes.ack.outcome == .retry)
        #expect((overBytes.retryAfterSeconds ?? 0) >= 1)
        let small = await f.ingestor.admitted(declaredBytes: 100) { f.ingestor.refusal(200, reason: "ran") }
        #expect(small.httpStatus == 200, "within both bounds")
        var stats = f.ingestor.admissionStats
        #expect(stats.inFlightBatches == 1 && stats.inFlightBytes == 600 && stats.busyRefusals == 1)
        open.yield()
        _ = await held.value
        stats = f.ingestor.admissionStats
        #expect(stats.inFlightBatches == 0 && stats.inFlightBytes == 0 && stats.peakInFlightBytes == 700)
    }

    /// A reload's limits hold from the next request: a larger byte bound admits what the old
    /// one refused, and `max_gateways` lowered refuses a new gateway.
    @Test func reloadedLimitsHoldFromTheNextRequest() async throws {
        var limits = AggregatorConfig.Limits()
        limits.maxInFlightBytes = 1000
        let f = try Fixture(limits: limits)
        defer { f.dir.remove() }
        let (gate, open) = AsyncStream<Void>.makeStream()
        let (started, starting) = AsyncStream<Void>.makeStream()
        let held = Task {
            await f.ingestor.admitted(declaredBytes: 600) {
                starting.yield()
                for await _ in gate { break }
                return f.ingestor.refusal(200, reason: "held")
            }
        }
        for await _ in started { break }
        #expect(await f.ingestor.admitted(declaredBytes: 600) { f.ingestor.refusal(200, reason: "ran") }.httpStatus == 429)
        limits.maxInFlightBytes = 2000
        limits.maxGateways = 1
        f.ingestor.apply(limits: limits)
        #expect(await f.ingestor.admitted(declaredBytes: 600) { f.ingestor.refusal(200, reason: "ran") }.httpStatus == 200)
        #expect(f.ingestor.admissionStats.maxInFlightBytes == 2000)
        open.yield()
        _ = await held.value
        let first = await f.ingestor.handle(body: try Self.request(gateway: "gw-1"), contentType: WireProtocol.protobufContentType, contentEncoding: nil)
        #expect(first.httpStatus == 200)
        let second = await f.ingestor.handle(body: try Self.request(gateway: "gw-2"), contentType: WireProtocol.protobufContentType, contentEncoding: nil)
        #expect(second.httpStatus == 503, "max_gateways lowered to 1 by the reload")
    }

    @Test func oneRequestIsAlwaysAdmittedHoweverLarge() async throws {
        var limits = AggregatorConfig.Limits()
        limits.maxInFlightBytes = 10
        let f = try Fixture(limits: limits)
        defer { f.dir.remove() }
        let body = try Self.request()
        let response = await f.ingestor.handle(body: body, contentType: WireProtocol.protobufContentType, contentEncoding: nil)
        #expect(response.httpStatus == 200 && body.count > 10)
    }

    /// Retry-After stretches with how many are refused per one served, so a fleet in overload
    /// comes back spread out instead of within the second; and it relaxes once the burst is over.
    @Test func retryAfterGrowsWithTheOverload() {
        var pressure = BatchIngestor.Pressure()
        #expect(pressure.retryAfterMs(averageWriteMs: 10) == 1000, "at least a second")
        #expect(pressure.retryAfterMs(averageWriteMs: 1500) == 1600, "at least the time a request spends in flight")
        pressure.note(refused: false, nowMs: 1_000)
        for _ in 0..<100 { pressure.note(refused: false, nowMs: 1_500) }
        for _ in 0..<300 { pressure.note(refused: true, nowMs: 1_600) }
        pressure.note(refused: true, nowMs: 2_100)  // the window closes: 300 refused per 101 served
        #expect((2900...3000).contains(pressure.retryAfterMs(averageWriteMs: 10)))
        #expect(pressure.retryAfterMs(averageWriteMs: 30_000) == 60_000, "at most a minute")
        for _ in 0..<10 { pressure.note(refused: false, nowMs: 2_500) }
        pressure.note(refused: false, nowMs: 3_200)  // a window with 1 refused per 10 served
        #expect(pressure.retryAfterMs(averageWriteMs: 10) == 1000)
        pressure.note(refused: true, nowMs: 9_000)  // after a quiet spell, nothing carried over
        #expect(pressure.retryAfterMs(averageWriteMs: 10) == 1000)
        // A second in which the sink paused: 500 refused, nothing answered. At most 8 s, not a minute.
        for _ in 0..<500 { pressure.note(refused: true, nowMs: 9_500) }
        pressure.note(refused: true, nowMs: 10_100)
        #expect(pressure.retryAfterMs(averageWriteMs: 10) == 8_000)
    }
}
