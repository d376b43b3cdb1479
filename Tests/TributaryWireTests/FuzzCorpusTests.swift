import Foundation
import Testing
import TributaryCore
import TributaryWire

/// The fuzz target's seed corpus (fuzz/corpus/), made by the real encoder and compressors.
/// Each seed is checked here against what the decoder must answer; with
/// `TRIBUTARY_WRITE_FUZZ_SEEDS=<dir>` set, the seeds are also written there (scripts/fuzz.sh --seeds).
@Suite("fuzz seed corpus")
struct FuzzCorpusTests {
    /// The fuzz target's first byte (fuzz/Sources/FuzzSyncRequest): bits 0-2 pick the
    /// Content-Encoding, bits 3-4 the Content-Type; these are the values the seeds use.
    enum Header: UInt8 {
        case plain = 0, identity = 1, gzip = 2, zstd = 3, spacedGzip = 4, capitalZstd = 5, brotli = 6
        case charsetParameter = 0b01_000, capitalType = 0b10_011, noType = 0b11_000

        var encoding: String? {
            [nil, "identity", "gzip", "zstd", " Gzip ", "ZSTD", "br", ""][Int(rawValue & 7)]
        }
        var contentType: String? {
            [WireProtocol.protobufContentType, WireProtocol.protobufContentType + "; charset=binary", " Application/X-Protobuf", nil][Int(rawValue >> 3) & 3]
        }
    }

    struct Seed {
        let name: String
        let header: Header
        let body: [UInt8]
        /// nil when the request is accepted.
        let refusal: Int?
        var readings = 0

        var bytes: [UInt8] { [header.rawValue] + body }
    }

    /// The fuzz target's limits.
    static let decoder = SyncRequestDecoder(maxBodyBytes: 8 << 10, maxDecompressedBytes: 1 << 20, batchLimits: {
        var limits = BatchLimits()
        limits.maxReadings = 10_000
        limits.maxStringBytes = 256
        return limits
    }())

    static func request(_ readings: [Reading], gateway: String = "gw-7", batchGateway: String? = nil) throws -> [UInt8] {
        var request = Tributary_V1_SyncRequest()
        request.status.gatewayID = gateway
        request.status.agentVersion = "0.1.0"
        request.status.backlogReadings = 12
        request.status.clockMs = 1_700_000_000_000
        if !readings.isEmpty {
            let identity = BatchIdentity(gatewayID: batchGateway ?? gateway, epoch: "epoch-1", sequence: 3)
            request.batch = BatchCodec.encode(identity: identity, readings: readings, sealedAtMs: 1_700_000_000_500)
        }
        return try request.serializedBytes()
    }

    /// Every value kind, units, labels, received offsets, two gateways' worth of sensors.
    static func mixed(_ count: Int, gateway: String = "gw-7") -> [Reading] {
        (0..<count).map { i in
            let value: ReadingValue = switch i % 4 {
            case 0: .double(20 + Double(i % 9) / 10)
            case 1: .integer(Int64(i) * 1000)
            case 2: .boolean(i % 8 == 2)
            default: .text("state-\(i % 3)")
            }
            let time = 1_700_000_000_000 + Int64(i * 250)
            return Reading(gatewayID: gateway, sensorID: "sensor-\(i % 5)", metric: "m\(i % 4)", topic: "site/\(gateway)/sensor-\(i % 5)",
                           timeMs: time, receivedAtMs: time + (i % 6 == 0 ? 40 : 0), value: value,
                           unit: i % 2 == 0 ? "C" : nil, labels: i % 10 == 0 ? ["room": "a", "floor": "2"] : [:])
        }
    }

    /// Doubles that must stay doubles (no decimal form): NaN, -0.0, tiny, huge, long fractions.
    static var oddDoubles: [Reading] {
        [Double.nan, -0.0, 1e-300, .greatestFiniteMagnitude, -.infinity, 0.1 + 0.2, 1 / 3].enumerated().map { i, d in
            Reading(gatewayID: "gw-7", sensorID: "odd", metric: "x", topic: "t", timeMs: Int64(i), receivedAtMs: Int64(i), value: .double(d))
        }
    }

    static func seeds() throws -> [Seed] {
        let small = try request(mixed(20))
        let large = try request(mixed(1000))
        let zeros = [UInt8](repeating: 0, count: 2 << 20)
        var wrongCount = Tributary_V1_SyncRequest()
        wrongCount.status.gatewayID = "gw-7"
        wrongCount.batch = BatchCodec.encode(identity: .init(gatewayID: "gw-7", epoch: "e", sequence: 1), readings: mixed(8), sealedAtMs: 0)
        wrongCount.batch.readingCount = 9
        return [
            Seed(name: "heartbeat", header: .plain, body: try request([]), refusal: nil),
            Seed(name: "batch-identity", header: .identity, body: small, refusal: nil, readings: 20),
            Seed(name: "batch-gzip", header: .gzip, body: Compression.compress(small, encoding: .gzip), refusal: nil, readings: 20),
            Seed(name: "batch-zstd", header: .zstd, body: Compression.compress(small, encoding: .zstd), refusal: nil, readings: 20),
            Seed(name: "batch-1000-zstd", header: .zstd, body: Compression.compress(large, encoding: .zstd), refusal: nil, readings: 1000),
            Seed(name: "batch-spaced-gzip", header: .spacedGzip, body: Compression.compress(small, encoding: .gzip), refusal: nil, readings: 20),
            Seed(name: "batch-capital-zstd", header: .capitalZstd, body: Compression.compress(small, encoding: .zstd), refusal: nil, readings: 20),
            Seed(name: "batch-charset", header: .charsetParameter, body: small, refusal: nil, readings: 20),
            Seed(name: "batch-capital-type", header: .capitalType, body: Compression.compress(small, encoding: .zstd), refusal: nil, readings: 20),
            Seed(name: "batch-odd-doubles", header: .plain, body: try request(oddDoubles), refusal: nil, readings: oddDoubles.count),
            Seed(name: "empty", header: .plain, body: [], refusal: 400),
            Seed(name: "empty-gzip", header: .gzip, body: [], refusal: 400),
            Seed(name: "empty-zstd", header: .zstd, body: [], refusal: 400),
            Seed(name: "truncated-identity", header: .plain, body: Array(small.prefix(small.count / 2)), refusal: 400),
            Seed(name: "truncated-gzip", header: .gzip, body: Array(Compression.compress(small, encoding: .gzip).dropLast(9)), refusal: 400),
            Seed(name: "truncated-zstd", header: .zstd, body: Array(Compression.compress(small, encoding: .zstd).dropLast(5)), refusal: 400),
            Seed(name: "two-zstd-frames", header: .zstd,
                 body: Compression.compress(Array(small.prefix(10)), encoding: .zstd) + Compression.compress(Array(small.dropFirst(10)), encoding: .zstd),
                 refusal: nil, readings: 20),
            Seed(name: "gzip-trailing-bytes", header: .gzip, body: Compression.compress(small, encoding: .gzip) + [1, 2, 3], refusal: 400),
            Seed(name: "bomb-gzip", header: .gzip, body: Compression.compress(zeros, encoding: .gzip, level: 9), refusal: 413),
            Seed(name: "bomb-zstd", header: .zstd, body: Compression.compress(zeros, encoding: .zstd, level: 19), refusal: 413),
            Seed(name: "foreign-batch", header: .plain, body: try request(mixed(4, gateway: "gw-8"), batchGateway: "gw-8x"), refusal: 400),
            Seed(name: "count-mismatch", header: .plain, body: try wrongCount.serializedBytes(), refusal: 400),
            Seed(name: "bad-gateway-id", header: .plain, body: try request([], gateway: "gw 7\n"), refusal: 400),
            Seed(name: "unknown-encoding", header: .brotli, body: small, refusal: 415),
            Seed(name: "no-content-type", header: .noType, body: small, refusal: 415),
        ]
    }

    @Test func seedsGetTheirAnswers() throws {
        for seed in try Self.seeds() {
            do throws(RequestRefusal) {
                let request = try Self.decoder.request(body: seed.body, contentType: seed.header.contentType, contentEncoding: seed.header.encoding)
                try Self.decoder.checkStatus(request)
                let readings = request.hasBatch ? try Self.decoder.readings(of: request) : []
                #expect(seed.refusal == nil, "\(seed.name) was accepted")
                #expect(readings.count == seed.readings, "\(seed.name)")
            } catch {
                #expect(error.status == seed.refusal, "\(seed.name): \(error.reason)")
            }
        }
    }

    /// The committed corpus stays small: a few hundred KB at most.
    @Test func seedsAreSmall() throws {
        let total = try Self.seeds().reduce(0) { $0 + $1.bytes.count }
        #expect(total < 100_000, "\(total) bytes")
    }

    @Test func writeSeedsWhenAsked() throws {
        guard let directory = ProcessInfo.processInfo.environment["TRIBUTARY_WRITE_FUZZ_SEEDS"] else { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for seed in try Self.seeds() {
            try Data(seed.bytes).write(to: URL(fileURLWithPath: directory).appendingPathComponent("seed-\(seed.name)"))
        }
    }
}
