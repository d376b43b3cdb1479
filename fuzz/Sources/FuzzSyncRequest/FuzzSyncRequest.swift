import SwiftProtobuf
import TributaryCore
import TributaryWire

// One input is one request to `POST /v1/batches`: its first byte picks the headers, the rest is
// the body. Refusals are expected; a crash, trap, hang or huge allocation is a bug.
//
// First byte (the seed generator, Tests/TributaryWireTests/FuzzCorpusTests.swift, writes the same):
//   bits 0-2  Content-Encoding: none, identity, gzip, zstd, " Gzip ", "ZSTD", "br", ""
//   bits 3-4  Content-Type: application/x-protobuf, with "; charset=binary", in capitals, or missing
let encodings: [String?] = [nil, "identity", "gzip", "zstd", " Gzip ", "ZSTD", "br", ""]
let contentTypes: [String?] = [
    WireProtocol.protobufContentType, WireProtocol.protobufContentType + "; charset=binary", " Application/X-Protobuf", nil,
]

// The aggregator's defaults scaled down (16 MiB body, 64 MiB decompressed, 100,000 readings, 4096-byte strings):
// each input then runs in microseconds, and every limit can be reached with small inputs.
let decoder = SyncRequestDecoder(maxBodyBytes: 8 << 10, maxDecompressedBytes: 1 << 20, batchLimits: {
    var limits = BatchLimits()
    limits.maxReadings = 10_000
    limits.maxStringBytes = 256
    limits.maxExpandedBytes = 1 << 20
    limits.storedSlackBytes = 4096
    return limits
}())

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSyncRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let selector = Int(input[0])
    let body = Array(input[1...])
    do throws(RequestRefusal) {
        // The order BatchIngestor.process checks in.
        let request = try decoder.request(body: body, contentType: contentTypes[(selector >> 3) & 3],
                                          contentEncoding: encodings[selector & 7])
        try decoder.checkStatus(request)
        guard request.hasBatch else { return 0 }
        let readings = try decoder.readings(of: request)
        precondition(readings.count == Int(request.batch.readingCount), "readings differ from the declared count")
        // The aggregator re-encodes the batch for its digest: that must not fail (it answers 500).
        let _: [UInt8] = try! request.batch.serializedBytes()
        checkRoundTrip(readings, identity: request.batch.id.identity)
        checkStoredSize(readings, strings: request.batch.strings)
    } catch {
        precondition((400..<500).contains(error.status) && !error.reason.isEmpty, "refusal \(error.status) without a 4xx status or a reason")
    }
    return 0
}

/// Accepted readings, encoded again as an agent or an upstream tier would, decode to the same
/// readings: the same values bit for bit, in the same order within each series.
func checkRoundTrip(_ readings: [Reading], identity: BatchIdentity) {
    let batch = BatchCodec.encode(identity: identity, readings: readings, sealedAtMs: 0)
    let again: [Reading]
    do {
        again = try BatchCodec.decode(batch, limits: decoder.batchLimits)
    } catch {
        preconditionFailure("re-encoded readings do not decode: \(error)")
    }
    // Series with one key that the input sent apart are merged by the encoder, so the order
    // across series may change; within a series it may not.
    precondition(bySeries(again) == bySeries(readings), "readings changed in a round trip through BatchCodec")
}

/// Each series' points in order.
func bySeries(_ readings: [Reading]) -> [Reading: [Point]] {
    Dictionary(grouping: readings, by: seriesKey).mapValues { $0.map(Point.init) }
}

/// Everything that names a reading's series: all but its times and value.
func seriesKey(_ r: Reading) -> Reading {
    var key = r
    key.timeMs = 0
    key.receivedAtMs = 0
    key.value = switch r.value {
    case .double: .double(0)
    case .integer: .integer(0)
    case .boolean: .boolean(false)
    case .text: .text("")
    }
    return key
}

/// A reading's times and value, a double as its bits: NaN equals itself, -0.0 differs from 0.0.
struct Point: Hashable {
    let timeMs: Int64
    let receivedAtMs: Int64
    let value: ReadingValue
    let doubleBits: UInt64?

    init(_ r: Reading) {
        timeMs = r.timeMs
        receivedAtMs = r.receivedAtMs
        if case .double(let d) = r.value {
            value = .double(0)
            doubleBits = d.bitPattern
        } else {
            value = r.value
            doubleBits = nil
        }
    }
}

/// What an accepted request costs a sink stays a small multiple of what it carries (issue 25,
/// item 1: a 1 KB request once grew the SQLite sink by 600 MB): as the SQLite sink stores it
/// (each distinct series once, a row per reading with its text), and as rows with their whole
/// description (ClickHouse's insert). Computed here apart from the decoder's own accounting.
func checkStoredSize(_ readings: [Reading], strings: [String]) {
    let limits = decoder.batchLimits
    var series = Set<Reading>()
    var stored = 0, expanded = 0
    for r in readings {
        let row = ReadingLimits.expandedBytes(of: r)
        expanded += row
        if series.insert(seriesKey(r)).inserted { stored += row - ReadingLimits.rowOverheadBytes - textBytes(r) }
        stored += ReadingLimits.rowOverheadBytes + textBytes(r)
    }
    let carried = strings.reduce(0) { $0 + $1.utf8.count } + 16 * readings.count
    precondition(stored <= limits.storedFactor * carried + limits.storedSlackBytes, "stored \(stored) bytes for \(carried) carried")
    precondition(expanded <= limits.maxExpandedBytes, "\(expanded) bytes of rows")
}

func textBytes(_ r: Reading) -> Int {
    if case .text(let text) = r.value { return text.utf8.count }
    return 0
}
