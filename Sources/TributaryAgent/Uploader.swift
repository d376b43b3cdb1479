import AsyncHTTPClient
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TributaryCore
import TributaryWire

/// Seals due batches and sends them to the aggregator, oldest first, until each is
/// acknowledged. Transient failures are retried forever with backoff; a batch the aggregator
/// refuses for good is set aside (kept on disk, counted, reported) so it never blocks the rest.
public final class Uploader: Service {
    private let config: AgentConfig
    private let buffer: BufferStore
    private let stats: AgentStats
    private let client: SyncClient
    private let logger: Logger
    public static let agentVersion = "0.1.0"

    public init(config: AgentConfig, buffer: BufferStore, stats: AgentStats, http: HTTPClient, logger: Logger) {
        self.config = config
        self.buffer = buffer
        self.stats = stats
        self.logger = logger
        client = SyncClient(http: http, url: config.aggregator.url, encoding: config.aggregator.compression,
                            timeout: .seconds(Int64(config.aggregator.requestTimeoutSeconds)))
    }

    public func run() async throws {
        // On SIGTERM stop at once: an unacknowledged batch stays sealed and is resent next time.
        try? await cancelWhenGracefulShutdown {
            try await self.loop()
        }
    }

    private func loop() async throws {
        var backoff = Backoff(initialMs: config.aggregator.retryInitialMs, maxMs: config.aggregator.retryMaxMs)
        var lastContactMs = Int64(0)
        let idlePollMs = min(100, config.aggregator.batchMaxAgeMs)
        while !Task.isCancelled {
            let batch = try await blocking { [buffer, config] in
                try buffer.sealDueBatches(maxReadings: config.aggregator.batchMaxReadings, maxAgeMs: config.aggregator.batchMaxAgeMs)
                return try buffer.oldestSealedBatch()
            }
            let now = WallClock.nowMs()
            guard let batch else {
                if now - lastContactMs >= Int64(config.aggregator.heartbeatSeconds) * 1000 {
                    if case .acknowledged = await sendHeartbeat() { lastContactMs = now }
                }
                try await Task.sleep(for: .milliseconds(idlePollMs))
                continue
            }
            switch await send(batch) {
            case .acknowledged(let duplicate):
                try await blocking { [buffer] in try buffer.acknowledge(batch.identity.sequence) }
                backoff.reset()
                lastContactMs = now
                logger.debug("batch acknowledged", metadata: [
                    "batch": "\(batch.identity)", "readings": "\(batch.readingCount)", "duplicate": "\(duplicate)",
                ])
            case .retry(let afterMs, let reason):
                let wait = backoff.next(floorMs: afterMs)
                stats.recordError(reason)
                try await blocking { [buffer] in try buffer.recordAttempt(batch.identity.sequence, error: reason) }
                logger.warning("batch not delivered; retrying", metadata: [
                    "batch": "\(batch.identity)", "reason": "\(reason)", "retry_in_ms": "\(wait)",
                ])
                try await Task.sleep(for: .milliseconds(wait))
            case .rejected(let reason):
                stats.recordError(reason)
                try await blocking { [buffer] in try buffer.setAside(batch.identity.sequence, reason: reason) }
                logger.error("batch refused by the aggregator; set aside on disk", metadata: [
                    "batch": "\(batch.identity)", "readings": "\(batch.readingCount)", "reason": "\(reason)",
                ])
            }
        }
    }

    private func send(_ batch: SealedBatch) async -> SyncClient.Outcome {
        var request = Tributary_V1_SyncRequest()
        do {
            request.batch = try Tributary_V1_Batch(serializedBytes: batch.payload)
        } catch {
            return .rejected(reason: "stored batch does not decode: \(error)")
        }
        // The aggregator records this status only once the batch is committed, so describe
        // the gateway as it is then: without this batch in the backlog.
        request.status = await status(excluding: batch)
        return await client.send(request, expecting: batch.identity)
    }

    private func sendHeartbeat() async -> SyncClient.Outcome {
        var request = Tributary_V1_SyncRequest()
        request.status = await status()
        let outcome = await client.send(request, expecting: nil)
        if case .retry(_, let reason) = outcome { stats.recordError(reason) }
        return outcome
    }

    /// The gateway's status as the aggregator's fleet registry wants it.
    func status(excluding batch: SealedBatch? = nil) async -> Tributary_V1_GatewayStatus {
        let counters = buffer.snapshot
        let sequence = batch?.identity.sequence
        let facts = try? await blocking { [buffer] in (try buffer.oldestUnacknowledgedMs(excluding: sequence), try buffer.sizeBytes()) }
        let now = WallClock.nowMs()
        let rates = stats.rates(ingested: counters.ingestedTotal, acknowledged: counters.acknowledgedTotal, nowMs: now)
        var status = Tributary_V1_GatewayStatus()
        status.gatewayID = config.gatewayID
        status.agentVersion = Self.agentVersion
        status.backlogReadings = UInt64(max(0, counters.unsealedReadings + counters.sealedReadings - Int64(batch?.readingCount ?? 0)))
        status.backlogBytes = UInt64(max(0, facts?.1 ?? 0))
        status.oldestUnsentMs = facts?.0 ?? 0
        status.ingestedTotal = UInt64(counters.ingestedTotal)
        status.acknowledgedTotal = UInt64(counters.acknowledgedTotal)
        status.quarantinedTotal = UInt64(counters.quarantinedTotal)
        status.droppedTotal = UInt64(counters.droppedTotal)
        status.sealedBatches = UInt64(counters.sealedBatches)
        if let error = stats.lastError {
            status.lastError = error.message
            status.lastErrorMs = error.atMs
        }
        status.brokerConnected = stats.brokerConnected
        status.clockMs = now
        status.ingestRate = rates.ingest
        status.sendRate = rates.send
        return status
    }

    /// SQLite calls block: run them on NIO's blocking pool, never on the cooperative pool.
    private func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}
