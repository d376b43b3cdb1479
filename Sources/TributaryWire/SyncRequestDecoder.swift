import Foundation
import TributaryCore

/// Why a `POST /v1/batches` body was refused: the HTTP status to answer and a reason for the ack.
public struct RequestRefusal: Error, Sendable, Equatable {
    /// 400 malformed, 413 too large, 415 wrong Content-Type or Content-Encoding.
    public let status: Int
    public let reason: String

    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }
}

/// The pure part of the aggregator's request handling: from the bytes and headers of a
/// `POST /v1/batches` to a checked sync request and its readings. No I/O, so the aggregator and
/// the fuzz target (`fuzz/`) run the very same code.
public struct SyncRequestDecoder: Sendable {
    /// The body as sent (compressed).
    public var maxBodyBytes: Int
    /// The body after decompression: the cap against decompression bombs.
    public var maxDecompressedBytes: Int
    public var batchLimits: BatchLimits

    public init(maxBodyBytes: Int, maxDecompressedBytes: Int, batchLimits: BatchLimits) {
        self.maxBodyBytes = maxBodyBytes
        self.maxDecompressedBytes = maxDecompressedBytes
        self.batchLimits = batchLimits
    }

    /// Checks the headers and the size, decompresses, and parses the protobuf.
    public func request(body: [UInt8], contentType: String?, contentEncoding: String?) throws(RequestRefusal) -> Tributary_V1_SyncRequest {
        let type = contentType?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard type == WireProtocol.protobufContentType else {
            throw RequestRefusal(status: 415, reason: "Content-Type must be \(WireProtocol.protobufContentType), not \(contentType ?? "missing")")
        }
        let encodingName = (contentEncoding ?? "identity").trimmingCharacters(in: .whitespaces).lowercased()
        guard let encoding = ContentEncoding(rawValue: encodingName) else {
            throw RequestRefusal(status: 415, reason: "Content-Encoding '\(encodingName)' is not supported (identity, gzip, zstd)")
        }
        guard body.count <= maxBodyBytes else {
            throw RequestRefusal(status: 413, reason: "body of \(body.count) bytes exceeds \(maxBodyBytes)")
        }
        let raw: [UInt8]
        do {
            raw = try Compression.decompress(body, encoding: encoding, maxSize: maxDecompressedBytes)
        } catch {
            throw RequestRefusal(status: error == .tooLarge(limit: maxDecompressedBytes) ? 413 : 400, reason: error.description)
        }
        do {
            try WireShape.check(raw, maxElements: batchLimits.maxReadings)
        } catch {
            throw RequestRefusal(status: 413, reason: "the batch's \(error.field) would hold \(error.count) elements; the limit is \(error.limit)")
        }
        do {
            return try Tributary_V1_SyncRequest(serializedBytes: raw)
        } catch {
            throw RequestRefusal(status: 400, reason: "body is not a tributary.v1.SyncRequest: \(error)")
        }
    }

    /// Every request, heartbeat or batch, must name a valid gateway in its status.
    public func checkStatus(_ request: Tributary_V1_SyncRequest) throws(RequestRefusal) {
        let gateway = request.status.gatewayID
        guard request.hasStatus, GatewayID.isValid(gateway) else {
            throw RequestRefusal(status: 400, reason: "status.gateway_id '\(Printable.clean(gateway, maxLength: 64))' is missing or not a valid id")
        }
    }

    /// The batch's readings, every index and limit checked; the batch must be the status's gateway's.
    public func readings(of request: Tributary_V1_SyncRequest) throws(RequestRefusal) -> [Reading] {
        let gateway = request.status.gatewayID
        guard GatewayID.same(request.batch.id.gatewayID, gateway) else {
            throw RequestRefusal(status: 400, reason: "batch belongs to '\(Printable.clean(request.batch.id.gatewayID, maxLength: 64))' but the status to '\(gateway)'")
        }
        // Sequences count from 1 and fit the sinks' signed 64-bit columns; a chain digest is a
        // SHA-256 or nothing.
        let sequence = request.batch.id.sequence
        guard sequence >= 1, sequence <= UInt64(Int64.max) else {
            throw RequestRefusal(status: 400, reason: "batch sequence \(sequence) is out of range 1...\(Int64.max)")
        }
        guard [0, 32].contains(request.batch.previousDigest.count) else {
            throw RequestRefusal(status: 400, reason: "previous_digest has \(request.batch.previousDigest.count) bytes; a SHA-256 has 32")
        }
        do {
            return try BatchCodec.decode(request.batch, limits: batchLimits)
        } catch {
            // Too costly for what it carries is a size refusal; anything else a malformed batch.
            if case .tooExpensive = error { throw RequestRefusal(status: 413, reason: "\(error)") }
            throw RequestRefusal(status: 400, reason: "invalid batch: \(error)")
        }
    }
}
