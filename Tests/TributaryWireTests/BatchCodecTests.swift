import Testing
import TributaryTesting
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

    /// The bounds of `ReadingLimits`, the ones the agent checks before it buffers: a batch that
    /// breaks them was not made by an honest agent and is refused whole.
    @Test(arguments: ["empty metric", "long sensor", "long unit", "many labels", "long label value", "big labels"])
    func readingsOutOfBoundsAreRefused(_ what: String) throws {
        var readings = Self.readings(8)
        let reason: String
        switch what {
        case "empty metric": readings[3].metric = ""; reason = "metric name is empty"
        case "long sensor": readings[3].sensorID = String(repeating: "s", count: 257); reason = "sensor id has 257 bytes"
        case "long unit": readings[3].unit = String(repeating: "u", count: 65); reason = "unit has 65 bytes"
        case "many labels":
            readings[3].labels = Dictionary(uniqueKeysWithValues: (0...32).map { ("k\($0)", "v") }); reason = "more than 32 labels"
        case "long label value": readings[3].labels = ["room": String(repeating: "v", count: 513)]; reason = "label 'room' has 513 bytes"
        default:
            readings[3].labels = Dictionary(uniqueKeysWithValues: (0..<10).map { ("k\($0)", String(repeating: "v", count: 500)) })
            reason = "take 5"
        }
        #expect(ReadingLimits().violation(of: readings[3])?.contains(reason) == true, "\(what): \(ReadingLimits().violation(of: readings[3]) ?? "none")")
        let batch = BatchCodec.encode(identity: .init(gatewayID: "gw", epoch: "e", sequence: 1), readings: readings, sealedAtMs: 0)
        do {
            _ = try BatchCodec.decode(batch)
            Issue.record("\(what): accepted")
        } catch {
            #expect(error.description.contains(reason), "\(what): \(error)")
        }
    }

    /// The agent's running cost (BatchCost) and the aggregator's, from the decoded batch,
    /// agree: a batch the agent fills within the bounds is one the aggregator takes.
    @Test(arguments: [1, 7, 200, 3000])
    func theAgentsCostIsTheAggregatorsCost(_ count: Int) throws {
        var cost = BatchCost()
        let readings = Self.readings(count)
        for r in readings { cost.add(r) }
        var limits = BatchLimits()
        limits.storedFactor = 0
        limits.storedSlackBytes = cost.totals.stored - 1
        let batch = BatchCodec.encode(identity: .init(gatewayID: "gw", epoch: "e", sequence: 1), readings: readings, sealedAtMs: 0)
        #expect(throws: BatchDecodingError.self, "one byte under what the agent counted is refused") { try BatchCodec.decode(batch, limits: limits) }
        limits.storedSlackBytes = cost.totals.stored
        limits.maxExpandedBytes = cost.totals.expanded
        #expect(try BatchCodec.decode(batch, limits: limits).count == count, "exactly what the agent counted is taken")
    }

    /// `café` with `é` as one scalar and as `e` + U+0301 are equal to Swift's `==` and different
    /// bytes to everything else: two sensors, and each text keeps its own bytes. Keyed by
    /// String, the encoder merged them into one sensor, stored the second's text as the first's
    /// bytes, and priced a batch below what the aggregator counted (a 413, set aside).
    @Test func canonicallyEquivalentStringsStayApart() throws {
        let composed = "caf\u{00E9}", decomposed = "cafe\u{0301}"
        #expect(composed == decomposed && !composed.utf8.elementsEqual(decomposed.utf8), "the premise")
        let readings = [composed, decomposed].enumerated().map { i, name in
            Reading(gatewayID: "gw", sensorID: name, metric: "m", topic: "t/\(name)", timeMs: Int64(i), receivedAtMs: Int64(i), value: .text(name))
        }
        let batch = BatchCodec.encode(identity: .init(gatewayID: "gw", epoch: "e", sequence: 1), readings: readings, sealedAtMs: 0)
        #expect(batch.series.count == 2)
        let decoded = try BatchCodec.decode(batch)
        for (sent, got) in zip(readings, decoded) {
            #expect(Array(got.sensorID.utf8) == Array(sent.sensorID.utf8))
            #expect(Array(got.topic.utf8) == Array(sent.topic.utf8))
            guard case .text(let text) = got.value, case .text(let original) = sent.value else { Issue.record("not text"); continue }
            #expect(Array(text.utf8) == Array(original.utf8))
        }
        // The agent's price is the aggregator's, to the byte.
        var cost = BatchCost()
        for r in readings { cost.add(r) }
        var limits = BatchLimits()
        limits.storedFactor = 0
        limits.storedSlackBytes = cost.totals.stored - 1
        #expect(throws: BatchDecodingError.self) { try BatchCodec.decode(batch, limits: limits) }
        limits.storedSlackBytes = cost.totals.stored
        #expect(try BatchCodec.decode(batch, limits: limits).count == 2)
    }

    @Test func anEpochOrGatewayPastItsBoundIsRefused() throws {
        for identity in [BatchIdentity(gatewayID: "gw", epoch: String(repeating: "e", count: 65), sequence: 1),
                         BatchIdentity(gatewayID: String(repeating: "g", count: 129), epoch: "e", sequence: 1)] {
            let batch = BatchCodec.encode(identity: identity, readings: Self.readings(2), sealedAtMs: 0)
            #expect(throws: BatchDecodingError.self) { try BatchCodec.decode(batch) }
        }
        let atTheBound = BatchCodec.encode(identity: .init(gatewayID: "gw", epoch: String(repeating: "e", count: 64), sequence: 1),
                                           readings: Self.readings(2), sealedAtMs: 0)
        #expect(try BatchCodec.decode(atTheBound).count == 2)
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

    /// Found by the fuzz target: a zstd frame may declare a 128 MiB window, which the decoder
    /// allocated up front whatever `maxSize` said. Windows past what `maxSize` needs are refused
    /// as too large, before any allocation.
    @Test func zstdWindowIsBoundedByTheLimit() throws {
        let content = (0..<100).map { UInt8($0) }
        // Magic; no content size, no checksum; window descriptor 0x88 = 2^27 bytes; one raw block of 100 bytes (last).
        let frame: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x88, 0x21, 0x03, 0x00] + content
        #expect(try Compression.decompress(frame, encoding: .zstd, maxSize: 1 << 27) == content)
        #expect(throws: CompressionError.tooLarge(limit: 1 << 20)) { try Compression.decompress(frame, encoding: .zstd, maxSize: 1 << 20) }
        // Frames made by our own encoder need no more window than their content.
        let input = [UInt8](repeating: 7, count: (1 << 20) + 1)
        #expect(try Compression.decompress(Compression.compress(input, encoding: .zstd), encoding: .zstd, maxSize: input.count) == input)
    }

    @Test(arguments: [ContentEncoding.gzip, .zstd])
    func refusesCorruptAndTruncated(_ encoding: ContentEncoding) {
        let good = Compression.compress(Array("hello hello hello".utf8), encoding: encoding)
        #expect(throws: CompressionError.self) { try Compression.decompress(Array(good.dropLast(4)), encoding: encoding, maxSize: 1000) }
        #expect(throws: CompressionError.self) { try Compression.decompress([1, 2, 3, 4, 5, 6, 7, 8], encoding: encoding, maxSize: 1000) }
    }
}

/// Short decimals travel as scaled, delta-coded integers; everything else stays a double.
@Suite("decimal values on the wire")
struct DecimalCodingTests {
    func roundTrip(_ values: [Double]) throws -> (decoded: [Double], series: Tributary_V1_Series) {
        let readings = values.enumerated().map { i, v in
            Reading.sample(timeMs: 1_000 + Int64(i), value: .double(v))
        }
        let batch = BatchCodec.encode(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: 1), readings: readings, sealedAtMs: 0)
        let decoded = try BatchCodec.decode(try Tributary_V1_Batch(serializedBytes: try batch.serializedBytes() as [UInt8]))
        return (decoded.sorted { $0.timeMs < $1.timeMs }.map { if case .double(let d) = $0.value { d } else { .nan } }, batch.series[0])
    }

    @Test func shortDecimalsComeBackBitForBit() throws {
        var values = (-3000...3000).map { Double($0) / 100 }            // every two-decimal value in ±30
        values += [230.1, 101.325, 0.000001, -7.94, 0, 12]
        let (decoded, series) = try roundTrip(values)
        #expect(decoded.map(\.bitPattern) == values.map(\.bitPattern))
        #expect(series.doubles.isEmpty && series.decimalScale == 6 && series.decimalDeltas.count == values.count)
    }

    @Test(arguments: [
        [21.5, 21.53, 1.0 / 3.0],            // one long fraction: the series stays doubles
        [1, -0.0, 2],                         // -0.0 would come back as 0.0
        [1, .nan, 2], [1, .infinity], [1e-300], [9_007_199_254_740_993.0 * 4],
    ])
    func otherDoublesStayDoubles(_ values: [Double]) throws {
        let (decoded, series) = try roundTrip(values)
        #expect(series.decimalDeltas.isEmpty && series.doubles.count == values.count)
        #expect(decoded.map(\.bitPattern) == values.map(\.bitPattern))
    }

    @Test func theSmallestScaleIsUsed() throws {
        #expect(try roundTrip([21.5, 22, 22.5]).series.decimalScale == 1)
        #expect(try roundTrip([1, 2, 3]).series.decimalScale == 0)
        #expect(try roundTrip([1e15, 12]).series.decimalScale == 0, "large whole numbers fit at scale 0")
    }

    @Test func malformedDecimalSeriesAreRefused() throws {
        var batch = BatchCodec.encode(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: 1), readings: [
            Reading.sample(timeMs: 1, value: .double(2.5)),
        ], sealedAtMs: 0)
        var both = batch
        both.series[0].doubles = [2.5]
        #expect(throws: BatchDecodingError.self) { try BatchCodec.decode(both) }
        batch.series[0].decimalScale = 10
        #expect(throws: BatchDecodingError.self) { try BatchCodec.decode(batch) }
        batch.series[0].decimalScale = 0
        batch.series[0].decimalDeltas = [Int64.max, 1]
        batch.series[0].timeDeltaMs = [0, 1]
        batch.readingCount = 2
        #expect(throws: BatchDecodingError.self) { try BatchCodec.decode(batch) }
    }
}
