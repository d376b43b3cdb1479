import Testing
import TributaryCore
import TributaryWire

@Suite("wire batches")
struct BatchCodecTests {
    static func readings(_ count: Int) -> [Reading] {
        (0..<count).map { i in
            let value: ReadingValue = switch i % 4 {
            case 0: .double(Double(i) * 0.5)
            case 1: .integer(Int64(i))
            case 2: .boolean(i % 8 == 2)
            default: .text("state-\(i % 3)")
            }
            return Reading(gatewayID: "gw", sensorID: "s\(i % 5)", metric: "m\(i % 4)", topic: "t/s\(i % 5)",
                           timeMs: 1_700_000_000_000 + Int64(i * 7), receivedAtMs: 1_700_000_000_000 + Int64(i * 7) + (i % 6 == 0 ? 3 : 0),
                           value: value, unit: i % 2 == 0 ? "C" : nil, labels: i % 10 == 0 ? ["room": "a"] : [:])
        }
    }

    @Test(arguments: [0, 1, 7, 1000])
    func roundTrip(count: Int) throws {
        let original = Self.readings(count)
        let identity = BatchIdentity(gatewayID: "gw", epoch: "e1", sequence: 42)
        let batch = BatchCodec.encode(identity: identity, readings: original, sealedAtMs: 5)
        let bytes: [UInt8] = try batch.serializedBytes()
        let decoded = try BatchCodec.decode(try Tributary_V1_Batch(serializedBytes: bytes))
        // Grouping by series reorders readings; the multiset is what must survive.
        #expect(Set(decoded) == Set(original))
        #expect(decoded.count == original.count)
        #expect(batch.id.identity == identity)
    }

    @Test func compactForNumericSeries() throws {
        let readings = (0..<5000).map { (i: Int) -> Reading in
            let time: Int64 = 1_700_000_000_000 + Int64(i / 50) * 1000
            let value: Double = 20 + Double(i % 70) / 10
            return Reading(gatewayID: "gw-001", sensorID: "sensor-\(i % 50)", metric: "temperature",
                           topic: "sensors/gw-001/sensor-\(i % 50)", timeMs: time, receivedAtMs: time, value: .double(value))
        }
        let batch = BatchCodec.encode(identity: .init(gatewayID: "gw-001", epoch: "e", sequence: 1), readings: readings, sealedAtMs: 0)
        let compressed = Compression.compress(try batch.serializedBytes(), encoding: .zstd)
        let perReading = Double(compressed.count) / Double(readings.count)
        #expect(perReading < 12, "\(perReading) bytes per reading")
    }

    @Test func rejectsInconsistentBatches() throws {
        var batch = BatchCodec.encode(identity: .init(gatewayID: "gw", epoch: "e", sequence: 1), readings: Self.readings(8), sealedAtMs: 0)
        var wrongCount = batch
        wrongCount.readingCount = 9
        #expect(throws: BatchDecodingError.self) { try BatchCodec.decode(wrongCount) }
        var badIndex = batch
        badIndex.series[0].sensor = 999
        #expect(throws: BatchDecodingError.badStringIndex(field: "sensor", index: 999)) { try BatchCodec.decode(badIndex) }
        batch.series[0].doubles.append(1)
        #expect(throws: BatchDecodingError.self) { try BatchCodec.decode(batch) }
        #expect(throws: BatchDecodingError.missingIdentity) { try BatchCodec.decode(Tributary_V1_Batch()) }
    }
}

@Suite("compression")
struct CompressionTests {
    @Test(arguments: ContentEncoding.allCases)
    func roundTrip(_ encoding: ContentEncoding) throws {
        let input = Array((0..<100_000).map { UInt8(truncatingIfNeeded: $0 % 251) })
        let compressed = Compression.compress(input, encoding: encoding)
        #expect(try Compression.decompress(compressed, encoding: encoding, maxSize: input.count) == input)
    }

    @Test(arguments: [ContentEncoding.gzip, .zstd])
    func refusesABomb(_ encoding: ContentEncoding) {
        let bomb = Compression.compress([UInt8](repeating: 0, count: 50 << 20), encoding: encoding)
        #expect(bomb.count < 200_000)
        #expect(throws: CompressionError.tooLarge(limit: 1 << 20)) {
            try Compression.decompress(bomb, encoding: encoding, maxSize: 1 << 20)
        }
    }

    @Test(arguments: [ContentEncoding.gzip, .zstd])
    func refusesCorruptAndTruncated(_ encoding: ContentEncoding) {
        let good = Compression.compress(Array("hello hello hello".utf8), encoding: encoding)
        #expect(throws: CompressionError.self) { try Compression.decompress(Array(good.dropLast(4)), encoding: encoding, maxSize: 1000) }
        #expect(throws: CompressionError.self) { try Compression.decompress([1, 2, 3, 4, 5, 6, 7, 8], encoding: encoding, maxSize: 1000) }
    }
}
