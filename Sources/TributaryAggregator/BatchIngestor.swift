import Foundation
import Logging
import Synchronization
import SwiftProtobuf
import TributaryAdminAPI
import TributaryCore
import TributaryRuntime
import TributarySinks
import TributaryCrypto
import TributaryWire

/// Handles one `POST /v1/batches` body: checks it, writes the batch to the sink through the
/// dedup ledger, records the gateway's status, and says what to answer. Knows nothing of HTTP
/// framing, so tests drive it directly.
public final class BatchIngestor: Sendable {
    public struct Response: Sendable {
        public let httpStatus: Int
        public let ack: Tributary_V1_Ack
        /// The gateway the request's status names (empty when it could not be decoded): who it
        /// claims to be, for the audit log.
        public var claimedGateway = ""
        /// The answer in the words metrics, the audit log and senders use.
        public var outcome: RequestOutcome { RequestOutcome(httpStatus: httpStatus, ack: ack) }
        /// For the Retry-After header.
        public var retryAfterSeconds: Int? { ack.retryAfterMs > 0 ? Int((ack.retryAfterMs + 999) / 1000) : nil }
    }

    private struct InFlight {
        /// Its in-flight figures are the live counters admission decides on.
        var stats = AdmissionStats()
        /// Moving average of a request's time in flight (the sink write and the wait for it), for Retry-After.
        var averageWriteMs = 10.0
        /// When the latest sink write failed (monotonic ms), for readiness.
        var lastSinkFailureMs: Int64 = 0
        var pressure = Pressure()
    }

    /// Requests refused busy against requests answered, over the last whole second: how far
    /// the offered load is past what the aggregator takes. Retry-After grows with it, so the
    /// refused come back spread over the time the aggregator needs to serve them, instead of
    /// all within a second to be refused again (a fleet in overload that retried every second
    /// kept itself there).
    struct Pressure {
        private var windowStartMs: Int64 = 0
        private var refused = 0
        private var answered = 0
        /// The last whole window's ratio of refused to answered; 0 when there was no refusal.
        private(set) var overload = 0.0

        mutating func note(refused isRefused: Bool, nowMs: Int64) {
            if nowMs - windowStartMs >= 1000 {
                // A window with no answers at all (everything refused, the sink slow) counts as one answered.
                overload = nowMs - windowStartMs < 2000 ? Double(refused) / Double(max(answered, 1)) : 0
                windowStartMs = nowMs
                refused = 0
                answered = 0
            }
            if isRefused { refused += 1 } else { answered += 1 }
        }

        /// How long a refused request should wait: the time a request spends in flight now,
        /// times how many are refused per one served (at most 8: a second in which the sink
        /// paused and nothing was answered must not send everyone away for a minute), at least
        /// a second, at most a minute.
        func retryAfterMs(averageWriteMs: Double) -> Int {
            let base = max(averageWriteMs + 100, 1000)
            return Int(min(max(base * min(max(1, overload), 8), 1000), 60_000))
        }
    }

    private let sink: any Sink
    private let registry: FleetRegistry
    /// Replaced by a reload (see `apply(limits:)`).
    private let liveLimits: Mutex<AggregatorConfig.Limits>
    private var limits: AggregatorConfig.Limits { liveLimits.withLock { $0 } }
    private let decodeGate: DecodeGate
    private let logger: Logger
    private let inFlight: Mutex<InFlight>
    /// Refusals are logged a line per kind every 10 s (the audit log has each one).
    private let logThrottle = LogThrottle()
    public let metrics: AggregatorMetrics
    /// Who was refused for their credentials, by the gateway they claimed.
    let refusedSenders: RefusedSenders
    /// On a relay: the spool that takes custody of each batch before it is answered.
    let relay: RelayCustody?
    /// `trusted_relays`: senders that may forward other gateways' batches.
    let trustedRelays: [String]

    public init(sink: any Sink, registry: FleetRegistry, limits: AggregatorConfig.Limits, metrics: AggregatorMetrics = .init(),
                relay: RelayCustody? = nil, trustedRelays: [String] = [], logger: Logger) {
        self.sink = sink
        self.relay = relay
        self.trustedRelays = trustedRelays
        self.metrics = metrics
        self.registry = registry
        liveLimits = Mutex(limits)
        decodeGate = DecodeGate(permits: limits.maxConcurrentDecodes)
        self.logger = logger
        refusedSenders = RefusedSenders(logger: logger)
        var state = InFlight()
        state.stats.maxInFlightBatches = limits.maxInFlightBatches
        state.stats.maxInFlightBytes = limits.maxInFlightBytes
        inFlight = Mutex(state)
    }

    /// A reload: admission (`max_in_flight_batches`, `max_in_flight_bytes`), `max_gateways` and
    /// what one batch may hold take effect for the next request; a request in flight finishes
    /// under the limits it was admitted with.
    func apply(limits: AggregatorConfig.Limits) {
        liveLimits.withLock { $0 = limits }
        inFlight.withLock { f in
            f.stats.maxInFlightBatches = limits.maxInFlightBatches
            f.stats.maxInFlightBytes = limits.maxInFlightBytes
        }
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
        let limits = self.limits
        let refusedRetryAfterMs: Int? = inFlight.withLock { f in
            let batches = f.stats.inFlightBatches, bytes = f.stats.inFlightBytes
            guard batches < limits.maxInFlightBatches, bytes + size <= limits.maxInFlightBytes || batches == 0 else {
                f.stats.busyRefusals += 1
                f.pressure.note(refused: true, nowMs: MonotonicClock.nowMs())
                // About as long as a request has recently spent in flight (that time already
                // includes waiting behind the queue ahead; multiplying by the queue length
                // counted the queue twice, and with a coalescing sink, which writes the whole
                // queue at once, told agents to wait tens of seconds for a sink that was
                // ready), stretched by how far the load is past what is served.
                return f.pressure.retryAfterMs(averageWriteMs: f.averageWriteMs)
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
        let ms = elapsed.inSeconds * 1000
        inFlight.withLock { f in
            f.stats.inFlightBatches -= 1
            f.stats.inFlightBytes -= size
            f.pressure.note(refused: false, nowMs: MonotonicClock.nowMs())
            // A body cut off for arriving too slowly says nothing of how long the sink takes:
            // it would only push the Retry-After everyone is told toward its 60 s cap.
            if response.httpStatus != 408 { f.averageWriteMs = f.averageWriteMs * 0.9 + ms * 0.1 }
        }
        return response
    }

    /// Why the sink's latest writes failed, while they did within `withinMs` and none succeeded
    /// since; nil otherwise.
    func recentWriteFailure(withinMs: Int64 = 10_000) -> String? {
        inFlight.withLock { f in
            guard f.stats.consecutiveSinkFailures > 0, MonotonicClock.nowMs() - f.lastSinkFailureMs < withinMs else { return nil }
            return f.stats.lastSinkError
        }
    }

    /// What admission control and the sink have been through, for the fleet view.
    public var admissionStats: AdmissionStats {
        inFlight.withLock { $0.stats }
    }

    /// Decodes, validates and writes an admitted request. `receivedAtMs` is when its first byte
    /// arrived (NTP's t2): stamped after a slow upload, it would bias the skew estimate.
    /// `authenticatedGateway` is the gateway the request's certificate or token proved (nil when
    /// the aggregator asks for neither): it may speak only for itself.
    func process(body: [UInt8], contentType: String?, contentEncoding: String?, receivedAtMs: Int64 = WallClock.nowMs(),
                 authenticatedGateway: String? = nil) async -> Response {
        var claimed = ""
        var response = await process(body: body, contentType: contentType, contentEncoding: contentEncoding, receivedAtMs: receivedAtMs,
                                     authenticatedGateway: authenticatedGateway, claimed: &claimed)
        response.claimedGateway = claimed
        return response
    }

    private func process(body: [UInt8], contentType: String?, contentEncoding: String?, receivedAtMs: Int64,
                         authenticatedGateway: String?, claimed: inout String) async -> Response {
        let request: Tributary_V1_SyncRequest
        do throws(RequestError) {
            request = try await decodeGate.run { () throws(RequestError) in
                try decode(body: body, contentType: contentType, contentEncoding: contentEncoding)
            }
            claimed = request.status.gatewayID
            try checkStatus(request)
            try checkPath(request.status.via, authenticatedSender: authenticatedGateway)
            if let authenticatedGateway, !isTrustedRelay(authenticatedGateway), !Self.sameID(request.status.gatewayID, authenticatedGateway) {
                // Not recorded in the registry: the claimed gateway did not send it. 403: the
                // agent keeps its batches and retries (its token or id is misconfigured).
                throw RequestError(status: 403, reason: "the credentials are gateway \(authenticatedGateway)'s; the request speaks for '\(Printable.clean(request.status.gatewayID, maxLength: 64))'")
            }
        } catch {
            if let held = logThrottle.admit("request \(error.status)") {
                logger.warning("request refused", metadata: ["status": "\(error.status)", "reason": "\(error.reason)",
                                                             "similar_held_back": "\(held)"])
            }
            return reply(error.status, .rejected, reason: error.reason, receivedAtMs: receivedAtMs)
        }
        let status = request.status
        guard registry.admits(status.gatewayID, max: limits.maxGateways) else {
            inFlight.withLock { $0.stats.newGatewaysRefused += 1 }
            if let held = logThrottle.admit("registry full") {
                logger.error("a new gateway is refused: the fleet registry is full (limits.max_gateways)", metadata: [
                    "gateway": "\(Printable.clean(status.gatewayID, maxLength: 128))", "max_gateways": "\(limits.maxGateways)",
                    "similar_held_back": "\(held)"])
            }
            return reply(503, .retry, reason: "this aggregator holds \(limits.maxGateways) gateways (limits.max_gateways); a new one is taken when an operator raises it",
                         retryAfterMs: 60_000, receivedAtMs: receivedAtMs)
        }
        guard request.hasBatch else {
            do {
                try await registry.record(status, event: .heartbeat, receivedAtMs: receivedAtMs)
            } catch {
                return reply(503, .retry, reason: "fleet registry unavailable: \(error)", retryAfterMs: 5000, receivedAtMs: receivedAtMs)
            }
            relay?.noteHeartbeat(status)
            return reply(200, .heartbeat, receivedAtMs: receivedAtMs)
        }
        let identity = request.batch.id.identity
        let readings: [Reading]
        do throws(RequestError) {
            readings = try checkBatch(request)
            if let authenticatedGateway, let other = readings.first(where: { !Self.sameID($0.gatewayID, isTrustedRelay(authenticatedGateway) ? status.gatewayID : authenticatedGateway) }) {
                // 422, not 403: this batch can never be taken, so the agent sets it aside and
                // goes on with its later ones (on a 403 it would retry it forever, holding them back).
                throw RequestError(status: 422, reason: "the batch carries readings of gateway '\(Printable.clean(other.gatewayID, maxLength: 64))'; gateway \(authenticatedGateway) may send only its own")
            }
        } catch {
            // The status is sound, so the gateway is known: its history shows the refusal.
            // The identity is what the client sent: echoed and kept only within its bounds.
            let shown = identity.isWithinBounds ? identity : nil
            if let held = logThrottle.admit("batch \(error.status)") {
                logger.warning("batch refused", metadata: ["gateway": "\(status.gatewayID)", "batch": "\(Printable.clean("\(identity)", maxLength: 256))",
                                                           "status": "\(error.status)", "reason": "\(error.reason)", "similar_held_back": "\(held)"])
            }
            await recordStatus(status, .rejected(shown, reason: error.reason), receivedAtMs: receivedAtMs)
            return reply(error.status, .rejected, identity: shown, reason: error.reason, receivedAtMs: receivedAtMs)
        }

        let batchBytes: [UInt8]
        do {
            batchBytes = try request.batch.serializedBytes()
        } catch {
            return reply(500, .retry, identity: identity, reason: "cannot re-encode the batch for its digest: \(error)",
                         retryAfterMs: 5000, receivedAtMs: receivedAtMs)
        }
        let digest = Digest.fnv1a64(batchBytes)
        // A relay takes custody first: once the spool holds the batch it reaches the upstream,
        // whatever becomes of this request. A resend finds it there (duplicate) and is still
        // written to the local sink if the first attempt did not get that far.
        var spooled: RelaySpool.Taken?
        if let relay {
            let oldest = readings.lazy.map(\.receivedAtMs).filter { $0 > 0 }.min() ?? 0
            switch await relay.take(request, identity: identity, digest: digest, batchBytes: batchBytes, readings: readings.count,
                                    oldestReadingMs: oldest, receivedAtMs: receivedAtMs) {
            case .taken(let taken):
                spooled = taken
            case .refused(let status, let reason, let retryAfterMs):
                if status == 409 { await recordStatus(request.status, .rejected(identity, reason: reason), receivedAtMs: receivedAtMs) }
                return reply(status, status == 409 ? .rejected : .retry, identity: identity, reason: reason, retryAfterMs: retryAfterMs, receivedAtMs: receivedAtMs)
            }
        }
        let result: SinkWriteResult
        do {
            let batch = IncomingBatch(identity: identity, readings: readings, digest: digest, receivedAtMs: receivedAtMs)
            if let spooled, relay?.keepsLocalCopy == false {
                result = spooled == .stored ? .accepted : .duplicate
            } else {
                result = try await metrics.sinkWriteSeconds.time { () async throws(SinkError) in try await sink.write(batch) }
            }
        } catch {
            if error.kind == .refused {
                // The sink will never take this batch (ClickHouse says why): 422 sets it aside on
                // the gateway with that reason, where a 503 would bring it back forever.
                let reason = "the sink refuses this batch for good: \(error)"
                if let held = logThrottle.admit("sink refused") {
                    logger.error("batch refused by the sink", metadata: ["batch": "\(identity)", "sink": "\(sink)", "error": "\(error)",
                                                                        "similar_held_back": "\(held)"])
                }
                await recordStatus(status, .rejected(identity, reason: reason), receivedAtMs: receivedAtMs)
                return reply(422, .rejected, identity: identity, reason: reason, receivedAtMs: receivedAtMs)
            }
            // Back off harder while the sink stays down: 1 s, 2 s, 4 s ... 30 s.
            let failures = inFlight.withLock { f in
                f.stats.sinkFailures += 1
                f.stats.consecutiveSinkFailures += 1
                f.stats.lastSinkError = error.description
                f.lastSinkFailureMs = MonotonicClock.nowMs()
                return f.stats.consecutiveSinkFailures
            }
            if let held = logThrottle.admit("sink") {
                logger.error("sink write failed", metadata: ["batch": "\(identity)", "sink": "\(sink)", "error": "\(error)",
                                                             "similar_held_back": "\(held)"])
            }
            await recordStatus(status, .refused(identity, readings: readings.count, reason: "sink unavailable: \(error)"),
                               receivedAtMs: receivedAtMs)
            return reply(503, .retry, identity: identity, reason: "sink unavailable: \(error)",
                         retryAfterMs: min(30_000, 1000 << min(failures - 1, 5)), receivedAtMs: receivedAtMs)
        }
        inFlight.withLock { $0.stats.consecutiveSinkFailures = 0 }
        let link = ChainLink(digest: BatchChain.hex(BatchChain.digest(of: batchBytes)), previous: BatchChain.hex(request.batch.previousDigest))
        let event: FleetRegistry.Event
        switch result {
        case .accepted:
            event = .accepted(identity, readings: readings.count, chain: link)
        case .duplicate:
            event = .duplicate(identity, readings: readings.count, chain: link)
        case .conflict:
            let reason = "batch \(identity) was already written with different contents"
            logger.error("batch identity reused with other contents", metadata: ["batch": "\(identity)"])
            await recordStatus(status, .rejected(identity, reason: reason), receivedAtMs: receivedAtMs)
            return reply(409, .rejected, identity: identity, reason: reason, receivedAtMs: receivedAtMs)
        }
        await recordStatus(status, event, receivedAtMs: receivedAtMs)
        logger.debug("batch handled", metadata: ["batch": "\(identity)", "readings": "\(readings.count)", "result": "\(result)"])
        return reply(200, result == .accepted ? .accepted : .duplicate, identity: identity, readingCount: readings.count,
                     receivedAtMs: receivedAtMs)
    }

    /// Records what became of a batch in the fleet registry. A failure only makes the fleet view
    /// lag: the batch's fate is already decided, so the agent is not made to resend.
    private func recordStatus(_ status: Tributary_V1_GatewayStatus, _ event: FleetRegistry.Event, receivedAtMs: Int64) async {
        do {
            try await registry.record(status, event: event, receivedAtMs: receivedAtMs)
        } catch {
            if let held = logThrottle.admit("registry") {
                logger.error("fleet registry update failed; the fleet view holds it in memory until the file can be written",
                             metadata: ["gateway": "\(status.gatewayID)", "error": "\(error)", "similar_held_back": "\(held)"])
            }
        }
    }

    // MARK: checks

    private func isTrustedRelay(_ sender: String) -> Bool {
        trustedRelays.contains { Self.sameID($0, sender) }
    }

    /// The relays a request passed through (`status.via`): bounded, printable; named last by a
    /// trusted relay that sends it, empty from a gateway that proved itself; and on a relay,
    /// neither through this relay already (a loop) nor longer than `upstream.max_hops`. 422: the
    /// sender sets the batch aside, so a loop stops at the first turn, not in a storm.
    private func checkPath(_ via: [String], authenticatedSender: String?) throws(RequestError) {
        guard via.count <= 64, via.allSatisfy(AggregatorConfig.isRelayID) else {
            throw RequestError(status: 400, reason: "status.via holds more than 64 relays or a relay id that is not 1-128 printable characters")
        }
        if let sender = authenticatedSender {
            if isTrustedRelay(sender) {
                guard let last = via.last, Self.sameID(last, sender) else {
                    throw RequestError(status: 403, reason: "relay \(sender) must name itself last in status.via")
                }
            } else if !via.isEmpty {
                throw RequestError(status: 403, reason: "\(sender) forwards for other gateways but is not in this aggregator's trusted_relays")
            }
        }
        guard let relay else { return }
        if via.contains(where: { Self.sameID($0, relay.relayID) }) {
            throw RequestError(status: 422, reason: "loop: this request already passed through relay \(relay.relayID) (via \(via.joined(separator: " -> "))); check the upstream settings of the relays on that path")
        }
        if via.count >= relay.maxHops {
            throw RequestError(status: 422, reason: "the request passed through \(via.count) relays (via \(via.joined(separator: " -> "))); upstream.max_hops here is \(relay.maxHops)")
        }
    }

    /// Byte for byte: String equality would take two Unicode spellings of one id as the same,
    /// which the sink and its ledger would not.
    static func sameID(_ a: String, _ b: String) -> Bool { GatewayID.same(a, b) }

    /// Refusals from the decoder and from `process`'s own checks alike.
    typealias RequestError = RequestRefusal

    /// The decoding is TributaryWire's, so the fuzz target (`fuzz/`) runs exactly this code.
    private var decoder: SyncRequestDecoder {
        // Rows may take what a decompressed body may: the memory already accounted for it.
        var batch = limits.batch
        batch.maxExpandedBytes = limits.maxDecompressedBytes
        return SyncRequestDecoder(maxBodyBytes: limits.maxBodyBytes, maxDecompressedBytes: limits.maxDecompressedBytes, batchLimits: batch)
    }

    private func decode(body: [UInt8], contentType: String?, contentEncoding: String?) throws(RequestError) -> Tributary_V1_SyncRequest {
        try decoder.request(body: body, contentType: contentType, contentEncoding: contentEncoding)
    }

    private func checkStatus(_ request: Tributary_V1_SyncRequest) throws(RequestError) {
        try decoder.checkStatus(request)
    }

    private func checkBatch(_ request: Tributary_V1_SyncRequest) throws(RequestError) -> [Reading] {
        try decoder.readings(of: request)
    }

    /// 429 decided outside admission (too much in flight from one address): retried soon.
    func busy(reason: String) -> Response {
        let retryAfterMs = inFlight.withLock { f in
            f.pressure.note(refused: true, nowMs: MonotonicClock.nowMs())
            return f.pressure.retryAfterMs(averageWriteMs: f.averageWriteMs)
        }
        return reply(429, .retry, reason: reason, retryAfterMs: retryAfterMs)
    }

    /// A refusal decided outside `process` (e.g. by the HTTP layer), as an ack.
    func refusal(_ status: Int, reason: String) -> Response {
        return reply(status, .rejected, reason: reason)
    }

    private func reply(_ status: Int, _ outcome: Tributary_V1_Ack.Outcome, identity: BatchIdentity? = nil,
                       readingCount: Int = 0, reason: String = "", retryAfterMs: Int = 0, receivedAtMs: Int64 = 0) -> Response {
        var ack = Tributary_V1_Ack()
        ack.outcome = outcome
        ack.readingCount = UInt32(readingCount)
        if let identity { ack.batchID = Tributary_V1_BatchId(identity) }
        ack.reason = reason
        ack.retryAfterMs = UInt32(retryAfterMs)
        ack.serverReceivedMs = receivedAtMs
        ack.serverTimeMs = WallClock.nowMs()
        let response = Response(httpStatus: status, ack: ack)
        // Every answer is made here, so each is counted once, by the word it is audited under.
        metrics.count(response.outcome, readings: response.outcome == .accepted ? readingCount : 0)
        return response
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
