import AsyncHTTPClient
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TributaryConfig
import TributaryBuffer
import TributaryCore
import TributaryRuntime
import TributarySync
import TributarySQLite
import TributaryWire

/// Seals due batches and sends them to the aggregator, oldest first, until each is
/// acknowledged. Transient failures are retried forever with backoff; a batch the aggregator
/// refuses for good is set aside (kept on disk, counted, reported) so it never blocks the rest.
public final class Uploader: Service {
    /// What a reload (SIGHUP) may change: the configuration, the client (aggregators, token,
    /// compression, timeout) and the token file watched.
    private struct Live {
        var config: AgentConfig
        /// Replaced when `aggregator.token_file` changes (see `rereadTokenIfChanged`) or on a reload.
        var client: SyncClient
        var tokenFileWatch: FileWatch?
    }

    private let live: Mutex<Live>
    private var config: AgentConfig { live.withLock { $0.config } }
    private var client: SyncClient { live.withLock { $0.client } }
    private let http: HTTPClient
    private let buffer: BufferStore
    private let stats: AgentStats
    /// The aggregators, in this gateway's order, and the one in use.
    var targets: AggregatorTargets { client.targets }
    /// The quarantine's kinds of reason as last counted, with the quarantine's revision they were
    /// counted at and when (counted again only when the quarantine changed: a payload
    /// quarantined, replayed or purged; at most every 10 s once there are any).
    private let quarantineKindsSeen = Mutex<(total: Int64, atMs: Int64, kinds: [Tributary_V1_QuarantineReason])>((-1, Int64.min / 2, []))
    private let logger: Logger
    private let reserve: DiskReserve
    public static let agentVersion = TributaryVersion.current
    /// The wall and monotonic clocks when this uploader was made, for retention's ages.
    private let startedWallMs = WallClock.nowMs()
    private let startedMonotonicMs = MonotonicClock.nowMs()

    public init(config: AgentConfig, buffer: BufferStore, stats: AgentStats, http: HTTPClient, logger: Logger) {
        self.buffer = buffer
        self.stats = stats
        self.logger = logger
        self.http = http
        reserve = DiskReserve(config: config)
        let client = Self.client(config, http: http, stats: stats, logger: logger)
        live = Mutex(Live(config: config, client: client, tokenFileWatch: config.aggregator.tokenFile.map { FileWatch(path: $0) }))
    }

    private static func client(_ config: AgentConfig, http: HTTPClient, stats: AgentStats, logger: Logger,
                               targets: AggregatorTargets? = nil) -> SyncClient {
        let gateway = config.gatewayID
        let targets = targets ?? AggregatorTargets(urls: config.aggregator.urls, senderID: config.gatewayID,
                                                   failbackProbeMs: Int64(config.aggregator.failbackSeconds) * 1000) { move in
            if let reason = move.reason {
                logger.warning("failing over to another aggregator", metadata: ["gateway": "\(gateway)", "from": "\(move.from)",
                                                                               "to": "\(move.to)", "reason": "\(reason)"])
            } else {
                logger.notice("back on the preferred aggregator", metadata: ["gateway": "\(gateway)", "aggregator": "\(move.to)",
                                                                             "from": "\(move.from)"])
            }
        }
        return SyncClient(http: http, targets: targets, encoding: config.aggregator.compression,
                          timeout: .seconds(Int64(config.aggregator.requestTimeoutSeconds)), observer: stats.sync,
                          token: config.aggregator.token, gatewayID: config.gatewayID)
    }

    /// A reload: the aggregators (their failover state kept when the list is the same), the
    /// token and its file, compression, batching, retries, heartbeat and retention take effect
    /// from the next round; a batch in flight finishes as it was sent.
    func apply(_ config: AgentConfig) {
        live.withLock { live in
            let old = live.config.aggregator
            let sameTargets = old.urls == config.aggregator.urls && old.failbackSeconds == config.aggregator.failbackSeconds
            live.client = Self.client(config, http: http, stats: stats, logger: logger, targets: sameTargets ? live.client.targets : nil)
            if old.tokenFile != config.aggregator.tokenFile {
                live.tokenFileWatch = config.aggregator.tokenFile.map { FileWatch(path: $0) }
            }
            live.config = config
        }
    }

    public func run() async throws {
        // On SIGTERM stop at once: an unacknowledged batch stays sealed and is resent next time.
        do {
            try await cancelWhenGracefulShutdown {
                try await self.loop()
            }
        } catch is CancellationError {
            return
        } catch {
            logger.error("uploader stopped", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// `buffer.retention_hours`, checked once a minute: what waited longer is deleted, counted
    /// as dropped, and said in the log (the aggregator's chain shows the gap too).
    private func expire(olderThanHours hours: Int) async {
        // Readings keep the wall time they were received at, so age is measured on the wall
        // clock, but never ahead of the monotonic time elapsed since start: a clock stepped
        // forward (a gateway without a real-time clock meeting NTP) must not make fresh readings
        // look old and delete them. A step back only keeps them longer.
        let steady = startedWallMs + (MonotonicClock.nowMs() - startedMonotonicMs)
        let cutoff = min(WallClock.nowMs(), steady) - Int64(hours) * 3_600_000
        do {
            let expired = try await blocking { [buffer] in try buffer.expire(receivedBeforeMs: cutoff) }
            guard expired.readings > 0 else { return }
            logger.warning("readings past the buffer's retention period deleted unsent", metadata: [
                "gateway": "\(config.gatewayID)", "readings": "\(expired.readings)", "batches": "\(expired.batches)",
                "retention_hours": "\(hours)", "dropped_total": "\(buffer.snapshot.droppedTotal)",
            ])
        } catch {
            reportBufferTrouble("cannot expire readings past retention", error)
        }
    }

    /// Rounds of up to `window` batches, oldest first, sent concurrently. After a round the
    /// aggregator fully acknowledged, the window grows by one and the next round starts at
    /// once (a backlog drains at full speed); after a 429, 503 or timeout it halves and the
    /// uploader backs off, honouring Retry-After.
    private func loop() async throws {
        var backoff = Backoff(initialMs: config.aggregator.retryInitialMs, maxMs: config.aggregator.retryMaxMs)
        var window = InFlightWindow(limit: config.aggregator.maxInFlightBatches)
        var lastContactMs = Int64.min / 2
        var nextHeartbeatMs = Int64.min / 2
        var heartbeatBackoff = Backoff(initialMs: config.aggregator.retryInitialMs, maxMs: config.aggregator.retryMaxMs)
        // Why the last heartbeat failed, logged once per reason: an idle gateway that cannot
        // reach its aggregator (a wrong CA, a refused token) says so in its log.
        var heartbeatProblem: String?
        var idlePollMs = min(100, config.aggregator.batchMaxAgeMs)
        var bufferTrouble = Backoff(initialMs: 100, maxMs: 5000)
        var nextExpiryMs = Int64.min / 2
        // When SQLite was last asked for work, for the idle polls that skip it.
        var nextLookMs = Int64.min / 2
        // Intervals and deadlines on the monotonic clock: a clock stepped back must not stop
        // heartbeats or retention for hours, nor one stepped forward fire them all at once.
        var applied = config.aggregator
        while !Task.isCancelled {
            rereadTokenIfChanged()
            let config = self.config
            if config.aggregator != applied {
                // Reloaded: the new bounds from this round on.
                if config.aggregator.retryInitialMs != applied.retryInitialMs || config.aggregator.retryMaxMs != applied.retryMaxMs {
                    backoff = Backoff(initialMs: config.aggregator.retryInitialMs, maxMs: config.aggregator.retryMaxMs)
                    heartbeatBackoff = Backoff(initialMs: config.aggregator.retryInitialMs, maxMs: config.aggregator.retryMaxMs)
                }
                if config.aggregator.maxInFlightBatches != applied.maxInFlightBatches {
                    window = InFlightWindow(limit: config.aggregator.maxInFlightBatches)
                }
                idlePollMs = min(100, config.aggregator.batchMaxAgeMs)
                applied = config.aggregator
            }
            if let hours = config.buffer.retentionHours, MonotonicClock.nowMs() >= nextExpiryMs {
                nextExpiryMs = MonotonicClock.nowMs() + 60_000
                await expire(olderThanHours: hours)
            }
            // Sealing needs disk space; when the disk is full, batches sealed earlier still go
            // out, and their acknowledgements free the space. With the reserve released, sealing
            // (about as much freed as written) may go further into the room kept free than ingest.
            // Idle (the counters show nothing unsealed and no sealed batch): a poll makes no trip
            // to the thread pool and SQLite (ten a second were most of an idle agent's CPU).
            // SQLite is asked anyway every few seconds, whatever the counters say.
            let counters = buffer.snapshot
            let idle = counters.unsealedReadings == 0 && counters.sealedBatches == 0 && MonotonicClock.nowMs() < nextLookMs
            if !idle { nextLookMs = MonotonicClock.nowMs() + 5_000 }
            if !idle, sealingHasRoom() {
                do {
                    try await blocking { [buffer, config] in
                        try buffer.sealDueBatches(maxReadings: config.aggregator.batchMaxReadings, maxAgeMs: config.aggregator.batchMaxAgeMs)
                    }
                } catch {
                    reportBufferTrouble("cannot seal batches", error)
                }
            }
            var batches: [SealedBatch] = []
            if !idle {
                do {
                    batches = try await blocking { [buffer, window] in try buffer.claimBatches(limit: window.size) }
                    bufferTrouble.reset()
                } catch {
                    reportBufferTrouble("cannot read batches", error)
                    try await Task.sleep(for: .milliseconds(bufferTrouble.next()))
                    continue
                }
            }
            let now = MonotonicClock.nowMs()
            guard !batches.isEmpty else {
                if now - lastContactMs >= Int64(config.aggregator.heartbeatSeconds) * 1000, now >= nextHeartbeatMs {
                    let outcome = await sendHeartbeat()
                    switch outcome {
                    case .acknowledged:
                        lastContactMs = now
                        heartbeatBackoff.reset()
                    case .retry(let afterMs, _):
                        // A busy or absent aggregator is not asked again every poll.
                        nextHeartbeatMs = now + Int64(heartbeatBackoff.next(floorMs: afterMs))
                    case .rejected, .identityTaken:
                        nextHeartbeatMs = now + Int64(config.aggregator.heartbeatSeconds) * 1000
                    }
                    logHeartbeat(outcome, lastProblem: &heartbeatProblem)
                }
                try await Task.sleep(for: .milliseconds(idlePollMs))
                continue
            }
            let outcomes = await sendRound(batches)
            var retryAfterMs: Int?
            do {
                try await settle(outcomes, retryAfterMs: &retryAfterMs)
            } catch {
                // The acknowledgement could not be recorded; the batch is resent and answered "duplicate".
                reportBufferTrouble("cannot record batch outcomes", error)
                retryAfterMs = retryAfterMs ?? 0
            }
            buffer.release(batches.map(\.identity.sequence))
            if let retryAfterMs {
                window.congestedRound()
                let wait = backoff.next(floorMs: retryAfterMs)
                logger.debug("backing off", metadata: ["retry_in_ms": "\(wait)", "window": "\(window.size)"])
                try await Task.sleep(for: .milliseconds(wait))
            } else {
                if batches.count == window.size { window.acknowledgedRound() }
                backoff.reset()
                lastContactMs = now
            }
        }
    }

    /// Logs the first failed heartbeat, every change of reason, and the first success after.
    private func logHeartbeat(_ outcome: SyncClient.Outcome, lastProblem: inout String?) {
        let problem: String? = switch outcome {
        case .acknowledged: nil
        case .retry(_, let reason), .rejected(let reason), .identityTaken(let reason): reason
        }
        guard problem != lastProblem else { return }
        if let problem {
            logger.warning("heartbeat not delivered; the aggregator does not see this gateway", metadata: [
                "gateway": "\(config.gatewayID)", "reason": "\(problem)",
            ])
        } else {
            logger.notice("heartbeat delivered again", metadata: ["gateway": "\(config.gatewayID)"])
        }
        lastProblem = problem
    }

    /// What the quarantine holds, by kind of reason, for the status: a GROUP BY over the
    /// quarantine table, so counted again only when the quarantine changed, at most every 10 s.
    private func quarantineKinds(revision total: Int64) async -> [Tributary_V1_QuarantineReason] {
        let now = MonotonicClock.nowMs()
        let (seenTotal, atMs, kinds) = quarantineKindsSeen.withLock { $0 }
        // The first quarantined payload is shown at once; later changes within 10 s.
        guard total != seenTotal, now - atMs >= 10_000 || kinds.isEmpty else { return kinds }
        let counted = (try? await blocking { [buffer] in try buffer.quarantineKinds() }) ?? []
        let fresh = counted.map { k in
            var reason = Tributary_V1_QuarantineReason()
            reason.kind = k.kind
            reason.count = UInt64(clamping: k.count)
            reason.example = String(k.example.prefix(300))
            return reason
        }
        quarantineKindsSeen.withLock { $0 = (total, now, fresh) }
        return fresh
    }

    /// Reads `aggregator.token_file` again when it changed (looked at once a second at most), so
    /// an operator rotates the gateway's token without a restart. A file that is gone or does not
    /// read is logged once, and the token read before stays in use.
    private func rereadTokenIfChanged() {
        guard let watch = live.withLock({ $0.tokenFileWatch }), let change = watch.change() else { return }
        let path = watch.path
        guard change == .rewritten else {
            logger.error("aggregator.token_file is gone; keeping the token read before", metadata: ["file": "\(path)"])
            return
        }
        do {
            let token = try SecretFile.read(path, as: .token(minLength: 16))
            live.withLock { $0.client = $0.client.replacingToken(token) }
            logger.notice("aggregator token reloaded", metadata: ["gateway": "\(config.gatewayID)", "file": "\(path)"])
        } catch {
            let message = "aggregator.token_file not reloaded, keeping the token read before: \(error.description)"
            stats.recordError(message)
            logger.error("\(message)", metadata: ["gateway": "\(config.gatewayID)"])
        }
    }

    private func sealingHasRoom() -> Bool {
        reserve.bytes == 0 || reserve.isHeld || reserve.headroomBytes(buffer: buffer) >= reserve.keptFree / 2
    }

    private func reportBufferTrouble(_ what: String, _ error: any Error) {
        reserve.releaseIfDiskFull(error, logger: logger, gateway: config.gatewayID)
        let full = (error as? SQLiteError)?.isDiskFull == true
        let message = "\(what): \(full ? "the buffer's disk is full" : "buffer error"): \(error)"
        stats.recordError(message)
        logger.error("\(message)", metadata: ["gateway": "\(config.gatewayID)"])
    }

    /// Sends each batch of a round concurrently; the outcomes come back in the batches' order.
    private func sendRound(_ batches: [SealedBatch]) async -> [(SealedBatch, SyncClient.Outcome)] {
        let status = await status(excluding: batches)
        return await withTaskGroup(of: (Int, SyncClient.Outcome).self) { group in
            for (index, batch) in batches.enumerated() {
                group.addTask { (index, await self.send(batch, status: status)) }
            }
            var outcomes = [SyncClient.Outcome?](repeating: nil, count: batches.count)
            for await (index, outcome) in group { outcomes[index] = outcome }
            return zip(batches, outcomes.map { $0! }).map { ($0, $1) }
        }
    }

    /// Records what became of each batch. `retryAfterMs` is set when any must be retried.
    private func settle(_ outcomes: [(SealedBatch, SyncClient.Outcome)], retryAfterMs: inout Int?) async throws {
        for (batch, outcome) in outcomes {
            switch outcome {
            case .acknowledged(let duplicate):
                try await blocking { [buffer] in try buffer.acknowledge(batch.identity.sequence) }
                logger.debug("batch acknowledged", metadata: [
                    "batch": "\(batch.identity)", "readings": "\(batch.readingCount)", "duplicate": "\(duplicate)",
                ])
            case .retry(let afterMs, let reason):
                retryAfterMs = max(retryAfterMs ?? 0, afterMs)
                stats.recordError(reason)
                try await blocking { [buffer] in try buffer.recordAttempt(batch.identity.sequence, error: reason) }
                logger.warning("batch not delivered; will retry", metadata: [
                    "batch": "\(batch.identity)", "reason": "\(reason)", "attempts": "\(batch.attempts + 1)",
                ])
            case .identityTaken(let reason):
                try await renewEpoch(after: batch, reason: reason)
                // Backed off like a retry: an aggregator answering 409 to everything must not
                // have the agent renew its epoch in a tight loop.
                retryAfterMs = max(retryAfterMs ?? 0, 0)
            case .rejected(let reason):
                stats.recordError(reason)
                try await blocking { [buffer] in try buffer.setAside(batch.identity.sequence, reason: reason) }
                logger.error("batch refused by the aggregator; set aside on disk", metadata: [
                    "batch": "\(batch.identity)", "readings": "\(batch.readingCount)", "reason": "\(reason)",
                ])
            }
        }
    }

    /// The aggregator holds other readings under this batch's identity: this buffer was rolled
    /// back. Its readings are sealed again under a new epoch and sent in the next round; the
    /// fleet view shows the new epoch's chain and, as the last error, why.
    private func renewEpoch(after batch: SealedBatch, reason: String) async throws {
        guard let renewal = try await blocking({ [buffer] in try buffer.renewEpoch(resealing: batch.identity.sequence) }) else { return }
        let message = "batch \(batch.identity) is already in the aggregator with other readings: this buffer was rolled back "
            + "(restored from an image or snapshot, or a power cut undid its last seals). "
            + (renewal.newEpoch.map { "New epoch \($0): " } ?? "") + "\(renewal.resealed.count) batch(es) sealed again under it"
        stats.recordError(message)
        logger.error("buffer rolled back: batch identities reused; resealed under a new epoch", metadata: [
            "gateway": "\(config.gatewayID)", "batch": "\(batch.identity)", "new_epoch": "\(renewal.newEpoch ?? buffer.epoch)",
            "resealed": "\(renewal.resealed.count)", "reason": "\(reason)",
        ])
    }

    private func send(_ batch: SealedBatch, status: Tributary_V1_GatewayStatus) async -> SyncClient.Outcome {
        var request = Tributary_V1_SyncRequest()
        do {
            request.batch = try Tributary_V1_Batch(serializedBytes: batch.payload)
        } catch {
            return .rejected(reason: "stored batch does not decode: \(error)")
        }
        request.status = status
        return await client.send(request, expecting: batch.identity)
    }

    private func sendHeartbeat() async -> SyncClient.Outcome {
        var request = Tributary_V1_SyncRequest()
        request.status = await status()
        let outcome = await client.send(request, expecting: nil)
        if case .retry(_, let reason) = outcome { stats.recordError(reason) }
        return outcome
    }

    /// The gateway's status as the aggregator's fleet registry wants it. The aggregator records
    /// the status sent with a batch once the batch is committed, so it describes the gateway as
    /// it is then: without the round's batches in the backlog. Their figures ride along, for
    /// the aggregator to add back if its sink refuses the batch (see status.proto).
    func status(excluding batches: [SealedBatch] = []) async -> Tributary_V1_GatewayStatus {
        let counters = buffer.snapshot
        let sequences = Set(batches.map(\.identity.sequence))
        let facts = try? await blocking { [buffer] in (try buffer.oldestUnacknowledgedMs(excluding: sequences), try buffer.sizeBytes()) }
        let now = WallClock.nowMs()
        let rates = stats.rates(ingested: counters.ingestedTotal, acknowledged: counters.acknowledgedTotal, monotonicMs: MonotonicClock.nowMs())
        var status = Tributary_V1_GatewayStatus()
        status.gatewayID = config.gatewayID
        status.agentVersion = Self.agentVersion
        let roundReadings = batches.reduce(0) { $0 + $1.readingCount }
        // Clamped, not converted: a count that went below zero (it never should) must not trap
        // the agent, as it did with two agents on one buffer.
        status.backlogReadings = UInt64(clamping: counters.unsealedReadings + counters.sealedReadings - Int64(roundReadings))
        status.backlogBytes = UInt64(clamping: facts?.1 ?? 0)
        status.oldestUnsentMs = facts?.0 ?? 0
        status.ingestedTotal = UInt64(clamping: counters.ingestedTotal)
        status.acknowledgedTotal = UInt64(clamping: counters.acknowledgedTotal)
        status.quarantinedTotal = UInt64(clamping: counters.quarantinedTotal)
        status.droppedTotal = UInt64(clamping: counters.droppedTotal)
        status.withheldTotal = stats.withheldTotal
        status.quarantineReasons = await quarantineKinds(revision: counters.quarantineRevision)
        status.sealedBatches = UInt64(clamping: counters.sealedBatches)
        status.setAsideBatches = UInt64(clamping: counters.setAsideBatches)
        status.redeliveriesTotal = UInt64(clamping: counters.redeliveriesTotal)
        status.bufferFull = stats.bufferFull
        if let error = stats.lastError {
            status.lastError = error.message
            status.lastErrorMs = error.atMs
        }
        status.brokerConnected = stats.brokerConnected
        status.clockMs = now
        status.ingestRate = rates.ingest
        status.sendRate = rates.send
        if let exchange = stats.sync.bestRecentExchange { status.lastExchange = Tributary_V1_ClockExchange(exchange) }
        status.roundReadings = UInt64(roundReadings)
        status.roundOldestMs = batches.map(\.oldestReceivedMs).filter { $0 > 0 }.min() ?? 0
        status.aggregator = targets.current
        status.failoversTotal = targets.failovers
        return status
    }

    /// SQLite calls block: run them on NIO's blocking pool, never on the cooperative pool.
    private func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}
