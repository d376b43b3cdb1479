import Foundation
import Logging
import Synchronization
import SwiftProtobuf
import TributaryCore
import TributaryWire

/// Handles one `POST /v1/batches` body: checks it, writes the batch to the sink through the
/// dedup ledger, records the gateway's status, and says what to answer. Knows nothing of HTTP
/// framing, so tests drive it directly.
public final class BatchIngestor: Sendable {
    public struct Response: Sendable {
        public let httpStatus: Int
        public let ack: Tributary_V1_Ack
        /// For the Retry-After header.
        public var retryAfterSeconds: Int? { ack.retryAfterMs > 0 ? Int((ack.retryAfterMs + 999) / 1000) : nil }
    }

    private struct InFlight {
        /// Its in-flight figures are the live counters admission decides on.
        var stats = AdmissionStats()
        /// Moving average of a request's time in flight (the sink write and the wait for it), for Retry-After.
        var averageWriteMs = 10.0
    }

    private let sink: any Sink
    private let registry: FleetRegistry
    private let limits: AggregatorConfig.Limits
    private let logger: Logger
    private let inFlight: Mutex<InFlight>

    public init(sink: any Sink, registry: FleetRegistry, limits: AggregatorConfig.Limits, logger: Logger) {
        self.sink = sink
        self.registry = registry
        self.limits = limits
        self.logger = logger
        var state = InFlight()
        state.stats.maxInFlightBatches = limits.maxInFlightBatches
        state.stats.maxInFlightBytes = limits.maxInFlightBytes
        inFlight = Mutex(state)
    }

    /// Checks and writes one request body whose bytes are at hand (tests, tools).
    public func handle(body: [UInt8], contentType: String?, contentEncoding: String?) async -> Response {
        await admitted(declaredBytes: body.count) {
            await self.process(body: body, contentType: contentType, contentEncoding: contentEncoding)
        }
    }

    /// Admission control: runs `work` only while what is in flight toward the sink stays within
    /// `max_in_flight_batches` and `max_in_flight_bytes`, counting `declaredBytes` (the
    /// Content-Length) before the body is even read; otherwise answers 429 with a Retry-After
    /// computed from the queue. One request is always admitted, however large, so an
    /// oversized-but-legal batch cannot starve.
    public func admitted(declaredBytes: Int, _ work: () async -> Response) async -> Response {
        let size = max(0, declaredBytes)
        let refusedRetryAfterMs: Int? = inFlight.withLock { f in
            let batches = f.stats.inFlightBatches, bytes = f.stats.inFlightBytes
            guard batches < limits.maxInFlightBatches, bytes + size <= limits.maxInFlightBytes || batches == 0 else {
                f.stats.busyRefusals += 1
                // About as long as a request has recently spent in flight: that time already
                // includes waiting behind the queue ahead. (Multiplying by the queue length
                // counted the queue twice, and with a coalescing sink, which writes the whole
                // queue at once, told agents to wait tens of seconds for a sink that was ready.)
                let waitMs = Int(f.averageWriteMs) + 100
                return min(max(waitMs, 1000), 60_000)
            }
            f.stats.inFlightBatches += 1
            f.stats.inFlightBytes += size
            f.stats.peakInFlightBatches = max(f.stats.peakInFlightBatches, f.stats.inFlightBatches)
            f.stats.peakInFlightBytes = max(f.stats.peakInFlightBytes, f.stats.inFlightBytes)
            return nil
        }
        if let retryAfterMs = refusedRetryAfterMs {
            return reply(429, .retry, reason: "aggregator busy: too much in flight toward the sink", retryAfterMs: retryAfterMs)
        }
        let started = ContinuousClock.now
        let response = await work()
        let elapsed = ContinuousClock.now - started
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        inFlight.withLock { f in
            f.stats.inFlightBatches -= 1
            f.stats.inFlightBytes -= size
            f.averageWriteMs = f.averageWriteMs * 0.9 + ms * 0.1
        }
        return response
    }

    /// What admission control and the sink have been through, for the fleet view.
    public var admissionStats: AdmissionStats {
        inFlight.withLock { $0.stats }
    }

    /// Decodes, validates and writes an admitted request.
    func process(body: [UInt8], contentType: String?, contentEncoding: String?) async -> Response {
        let receivedAtMs = WallClock.nowMs()
        let request: Tributary_V1_SyncRequest
        let readings: [Reading]?
        do throws(RequestError) {
            request = try decode(body: body, contentType: contentType, contentEncoding: contentEncoding)
            readings = try validate(request)
        } catch {
            logger.warning("request refused", metadata: ["status": "\(error.status)", "reason": "\(error.reason)"])
            return reply(error.status, .rejected, reason: error.reason)
        }
        let status = request.status
        guard let readings else {
            do {
                try await registry.record(status, event: .heartbeat, receivedAtMs: receivedAtMs)
            } catch {
                return reply(503, .retry, reason: "fleet registry unavailable: \(error)", retryAfterMs: 5000)
            }
            return reply(200, .heartbeat)
        }
        let identity = request.batch.id.identity

        let batchBytes: [UInt8]
        do {
            batchBytes = try request.batch.serializedBytes()
        } catch {
            return reply(500, .retry, identity: identity, reason: "cannot re-encode the batch for its digest: \(error)", retryAfterMs: 5000)
        }
        let digest = Digest.fnv1a64(batchBytes)
        let result: SinkWriteResult
        do {
            result = try await sink.write(IncomingBatch(identity: identity, readings: readings, digest: digest, receivedAtMs: receivedAtMs))
        } catch {
            // Back off harder while the sink stays down: 1 s, 2 s, 4 s ... 30 s.
            let failures = inFlight.withLock { f in
                f.stats.sinkFailures += 1
                f.stats.consecutiveSinkFailures += 1
                f.stats.lastSinkError = error.description
                return f.stats.consecutiveSinkFailures
            }
            logger.error("sink write failed", metadata: ["batch": "\(identity)", "sink": "\(sink)", "error": "\(error)"])
            return reply(503, .retry, identity: identity, reason: "sink unavailable: \(error)",
                         retryAfterMs: min(30_000, 1000 << min(failures - 1, 5)))
        }
        inFlight.withLock { $0.stats.consecutiveSinkFailures = 0 }
        let event: FleetRegistry.Event
        switch result {
        case .accepted: event = .accepted(readings: readings.count)
        case .duplicate: event = .duplicate
        case .conflict:
            logger.error("batch identity reused with other contents", metadata: ["batch": "\(identity)"])
            return reply(409, .rejected, identity: identity,
                         reason: "batch \(identity) was already written with different contents")
        }
        do {
            try await registry.record(status, event: event, receivedAtMs: receivedAtMs)
        } catch {
            // The batch is committed; only the fleet view lags. Do not make the agent resend.
            logger.error("fleet registry update failed", metadata: ["gateway": "\(identity.gatewayID)", "error": "\(error)"])
        }
        logger.debug("batch handled", metadata: ["batch": "\(identity)", "readings": "\(readings.count)", "result": "\(result)"])
        return reply(200, result == .accepted ? .accepted : .duplicate, identity: identity, readingCount: readings.count)
    }

    // MARK: checks

    struct RequestError: Error {
        let status: Int
        let reason: String
    }

    private func decode(body: [UInt8], contentType: String?, contentEncoding: String?) throws(RequestError) -> Tributary_V1_SyncRequest {
        let type = contentType?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard type == WireProtocol.protobufContentType else {
            throw RequestError(status: 415, reason: "Content-Type must be \(WireProtocol.protobufContentType), not \(contentType ?? "missing")")
        }
        let encodingName = (contentEncoding ?? "identity").trimmingCharacters(in: .whitespaces).lowercased()
        guard let encoding = ContentEncoding(rawValue: encodingName) else {
            throw RequestError(status: 415, reason: "Content-Encoding '\(encodingName)' is not supported (identity, gzip, zstd)")
        }
        guard body.count <= limits.maxBodyBytes else {
            throw RequestError(status: 413, reason: "body of \(body.count) bytes exceeds \(limits.maxBodyBytes)")
        }
        let raw: [UInt8]
        do {
            raw = try Compression.decompress(body, encoding: encoding, maxSize: limits.maxDecompressedBytes)
        } catch {
            throw RequestError(status: error == .tooLarge(limit: limits.maxDecompressedBytes) ? 413 : 400, reason: error.description)
        }
        do {
            return try Tributary_V1_SyncRequest(serializedBytes: raw)
        } catch {
            throw RequestError(status: 400, reason: "body is not a tributary.v1.SyncRequest: \(error)")
        }
    }

    /// The batch's readings, or nil for a heartbeat.
    private func validate(_ request: Tributary_V1_SyncRequest) throws(RequestError) -> [Reading]? {
        let gateway = request.status.gatewayID
        guard request.hasStatus, GatewayID.isValid(gateway) else {
            throw RequestError(status: 400, reason: "status.gateway_id '\(gateway.prefix(64))' is missing or not a valid id")
        }
        guard request.hasBatch else { return nil }
        guard request.batch.id.gatewayID == gateway else {
            throw RequestError(status: 400, reason: "batch belongs to '\(request.batch.id.gatewayID.prefix(64))' but the status to '\(gateway)'")
        }
        do {
            return try BatchCodec.decode(request.batch, limits: limits.batch)
        } catch {
            throw RequestError(status: 400, reason: "invalid batch: \(error)")
        }
    }

    /// A refusal decided outside `process` (e.g. by the HTTP layer), as an ack.
    func refusal(_ status: Int, reason: String) -> Response {
        reply(status, .rejected, reason: reason)
    }

    private func reply(_ status: Int, _ outcome: Tributary_V1_Ack.Outcome, identity: BatchIdentity? = nil,
                       readingCount: Int = 0, reason: String = "", retryAfterMs: Int = 0) -> Response {
        var ack = Tributary_V1_Ack()
        ack.outcome = outcome
        ack.readingCount = UInt32(readingCount)
        if let identity { ack.batchID = Tributary_V1_BatchId(identity) }
        ack.reason = reason
        ack.retryAfterMs = UInt32(retryAfterMs)
        ack.serverTimeMs = WallClock.nowMs()
        return Response(httpStatus: status, ack: ack)
    }
}

enum Digest {
    /// FNV-1a, 64 bits: tells a resend from a different batch under a reused identity.
    static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}
