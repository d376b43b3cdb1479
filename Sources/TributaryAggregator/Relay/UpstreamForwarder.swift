import AsyncHTTPClient
import Logging
import NIOCore
import NIOPosix
import Synchronization
import TributaryCore
import TributaryCrypto
import TributaryRuntime
import TributarySync
import TributaryWire

/// Drains a relay's spool to its upstream: the oldest batches first, the gateways taking turns,
/// each sent verbatim with its gateway's status (this relay appended to `via`). A batch leaves
/// the spool only when the upstream answered accepted or duplicate; 429, 503, timeouts and
/// connection failures are retried with the agent's AIMD window and jittered backoff; a batch
/// the upstream refuses for good (4xx: a loop, too many hops, a conflict) is set aside in the
/// spool, counted and logged, and never blocks the rest.
public final class UpstreamForwarder: Sendable {
    /// What the upstream link looks like, for metrics and the fleet view.
    public struct State: Sendable, Equatable {
        /// The last request was answered (any answer); false after a connection failure or timeout.
        public var reachable = false
        public var lastError = ""
    }

    private let spool: RelaySpool
    private let settings: AggregatorConfig.Upstream
    private let relayID: String
    private let client: SyncClient
    private let http: HTTPClient
    private let logger: Logger
    private let state = Mutex(State())
    /// Gateways' latest heartbeats (statuses without a batch) not yet passed upstream, by
    /// gateway: a newer one replaces an older, so an idle gateway behind the relay stays
    /// visible upstream without a request per heartbeat piling up.
    private let pendingHeartbeats = Mutex<[String: [UInt8]]>([:])
    /// (when, forwarded readings total) a minute back at most, for the forward rate.
    private let forwardSamples = Mutex<[(ms: Int64, total: UInt64)]>([])
    /// How many gateways the relay's own registry holds, for its report.
    private let gatewayCount: @Sendable () -> Int
    /// How often the relay reports itself upstream.
    static let reportIntervalMs: Int64 = 5000
    /// Answers from the upstream, by outcome, and their times.
    public let stats = SyncStats()

    public init(spool: RelaySpool, settings: AggregatorConfig.Upstream, relayID: String, gatewayCount: @escaping @Sendable () -> Int = { 0 },
                logger: Logger) throws(AggregatorStartError) {
        self.spool = spool
        self.gatewayCount = gatewayCount
        self.settings = settings
        self.relayID = relayID
        self.logger = logger
        var configuration = HTTPClient.Configuration()
        // A refused connection comes back at once, so this loop's own backoff decides the retry.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(Int64(min(settings.requestTimeoutSeconds, 5)))
        if let tls = settings.tls {
            do {
                configuration.tlsConfiguration = try TLSFiles.client(caFile: tls.caFile, certificateFile: tls.certificateFile,
                                                                     keyFile: tls.keyFile, keyPrefix: "upstream.tls")
            } catch {
                throw AggregatorStartError(message: error.description)
            }
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let targets = AggregatorTargets(urls: settings.urls, senderID: relayID, failbackProbeMs: Int64(settings.failbackSeconds) * 1000) { move in
            if let reason = move.reason {
                logger.warning("failing over to another upstream", metadata: ["relay_id": "\(relayID)", "from": "\(move.from)", "to": "\(move.to)",
                                                                             "reason": "\(reason)"])
            } else {
                logger.notice("back on the preferred upstream", metadata: ["relay_id": "\(relayID)", "upstream": "\(move.to)", "from": "\(move.from)"])
            }
        }
        var client = SyncClient(http: http, targets: targets, encoding: settings.compression,
                                timeout: .seconds(Int64(settings.requestTimeoutSeconds)), observer: stats,
                                token: settings.token, gatewayID: relayID)
        client.troubleSettings = .relay
        self.client = client
    }

    public var upstream: State { state.withLock { $0 } }

    /// Forwards batches, and reports this relay and its gateways' heartbeats, until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.forwardBatches() }
            group.addTask { await self.report() }
        }
    }

    /// A gateway's heartbeat reached this relay: passed upstream with the next report round.
    public func noteHeartbeat(_ status: Tributary_V1_GatewayStatus) {
        guard let bytes = try? status.serializedBytes() as [UInt8] else { return }
        pendingHeartbeats.withLock { $0[status.gatewayID] = bytes }
    }

    /// Every `reportIntervalMs`: this relay's own status (its spool and upstream link, as a
    /// heartbeat under its relay_id), then the gateways' heartbeats that came in meanwhile.
    /// Heartbeats are not data: one the upstream does not take is not sent again, the next replaces it.
    private func report() async {
        while !Task.isCancelled {
            var own = Tributary_V1_SyncRequest()
            own.status = relayStatus()
            _ = await client.send(own, expecting: nil)
            let pending = pendingHeartbeats.withLock { p in defer { p.removeAll() }; return p }
            await withTaskGroup(of: Void.self) { group in
                var running = 0
                for bytes in pending.values {
                    guard let status = try? Tributary_V1_GatewayStatus(serializedBytes: bytes) else { continue }
                    var request = Tributary_V1_SyncRequest()
                    request.status = Self.passedOn(status, relayID: relayID, held: (try? spool.held(of: status.gatewayID)) ?? .init())
                    if running >= settings.maxInFlightBatches { await group.next(); running -= 1 }
                    running += 1
                    group.addTask { _ = await self.client.send(request, expecting: nil) }
                }
            }
            try? await Task.sleep(for: .milliseconds(Self.reportIntervalMs))
        }
    }

    /// This relay as its upstream sees it: a "gateway" named by relay_id whose backlog is its spool.
    func relayStatus(nowMs: Int64 = WallClock.nowMs()) -> Tributary_V1_GatewayStatus {
        let f = spool.snapshot
        let link = upstream
        var status = Tributary_V1_GatewayStatus()
        status.gatewayID = relayID
        status.agentVersion = "relay " + Self.version
        status.clockMs = nowMs
        status.backlogReadings = UInt64(clamping: f.readings)
        status.backlogBytes = UInt64(clamping: f.bytes)
        status.oldestUnsentMs = f.oldestReceivedMs
        status.acknowledgedTotal = f.forwardedReadings
        status.setAsideBatches = UInt64(f.setAside)
        status.sealedBatches = UInt64(f.batches)
        status.lastError = link.lastError
        status.sendRate = forwardRate(total: f.forwardedReadings, nowMs: nowMs)
        status.via = [relayID]
        status.aggregator = client.targets.current
        status.failoversTotal = client.targets.failovers
        var report = Tributary_V1_RelayReport()
        report.spoolBatches = UInt64(f.batches)
        report.spoolBytes = UInt64(clamping: f.bytes)
        report.oldestUnforwardedMs = f.oldestReceivedMs
        report.upstreamUp = link.reachable
        report.forwardedBatchesTotal = f.forwardedBatches
        report.forwardedReadingsTotal = f.forwardedReadings
        report.setAsideBatches = UInt64(f.setAside)
        report.forwardRate = status.sendRate
        report.gateways = UInt32(clamping: gatewayCount())
        report.lastError = link.lastError
        status.relay = report
        return status
    }

    static let version = TributaryVersion.current

    /// Readings/s forwarded over about the last minute.
    private func forwardRate(total: UInt64, nowMs: Int64) -> Double {
        forwardSamples.withLock { samples in
            samples.append((nowMs, total))
            samples.removeAll { nowMs - $0.ms > 60_000 }
            guard let first = samples.first, nowMs > first.ms else { return 0 }
            return Double(total - min(total, first.total)) * 1000 / Double(nowMs - first.ms)
        }
    }

    private func forwardBatches() async {
        var backoff = Backoff(initialMs: settings.retryInitialMs, maxMs: settings.retryMaxMs)
        var window = InFlightWindow(limit: settings.maxInFlightBatches)
        var troubleLogged = ""
        while !Task.isCancelled {
            let entries: [RelaySpool.Entry]
            do {
                entries = try await blocking { [spool, window] in try spool.oldest(limit: window.size) }
            } catch {
                logger.error("cannot read the relay spool", metadata: ["path": "\(spool.path)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            guard !entries.isEmpty else {
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            let outcomes = await withTaskGroup(of: (Int, SyncClient.Outcome).self) { group in
                for (index, entry) in entries.enumerated() {
                    group.addTask { (index, await self.forward(entry)) }
                }
                var outcomes = [SyncClient.Outcome?](repeating: nil, count: entries.count)
                for await (index, outcome) in group { outcomes[index] = outcome }
                return outcomes.map { $0! }
            }
            var retryAfterMs: Int?
            for (entry, outcome) in zip(entries, outcomes) {
                do {
                    retryAfterMs = try await settle(entry, outcome, retryAfterMs: retryAfterMs, troubleLogged: &troubleLogged)
                } catch {
                    // The upstream has it, or will be asked again: a resend is answered duplicate.
                    logger.error("cannot record what the upstream answered; the batch will be sent again", metadata: [
                        "batch": "\(entry.identity)", "error": "\(error)"])
                    retryAfterMs = retryAfterMs ?? 1000
                }
            }
            if let retryAfterMs {
                window.congestedRound()
                try? await Task.sleep(for: .milliseconds(backoff.next(floorMs: retryAfterMs)))
            } else {
                if entries.count == window.size { window.acknowledgedRound() }
                backoff.reset()
            }
        }
    }

    private func forward(_ entry: RelaySpool.Entry) async -> SyncClient.Outcome {
        var request = Tributary_V1_SyncRequest()
        do {
            request.batch = try Tributary_V1_Batch(serializedBytes: entry.batch)
            request.status = try Tributary_V1_GatewayStatus(serializedBytes: entry.status)
        } catch {
            return .rejected(reason: "the spooled batch does not decode: \(error)")
        }
        request.status = Self.passedOn(request.status, relayID: relayID, held: (try? spool.held(of: entry.identity.gatewayID, excluding: entry.id)) ?? .init())
        return await client.send(request, expecting: entry.identity)
    }

    /// A gateway's status as this relay passes it upstream: this relay appended to `via`, and
    /// what of the gateway the spool still holds added to its backlog, so the lag the top tier
    /// shows is the age of the oldest reading not yet there, not only of what the gateway holds.
    static func passedOn(_ status: Tributary_V1_GatewayStatus, relayID: String, held: RelaySpool.Held) -> Tributary_V1_GatewayStatus {
        var status = status
        status.via.append(relayID)
        status.backlogReadings &+= UInt64(clamping: held.readings)
        status.backlogBytes &+= UInt64(clamping: held.bytes)
        if held.oldestReadingMs > 0 {
            status.oldestUnsentMs = status.oldestUnsentMs > 0 ? min(status.oldestUnsentMs, held.oldestReadingMs) : held.oldestReadingMs
        }
        return status
    }

    /// Records the answer; returns the retry floor when the batch must be sent again.
    private func settle(_ entry: RelaySpool.Entry, _ outcome: SyncClient.Outcome, retryAfterMs: Int?,
                        troubleLogged: inout String) async throws -> Int? {
        switch outcome {
        case .acknowledged:
            try await blocking { [spool] in try spool.forwarded(entry) }
            state.withLock { s in
                s.reachable = true
                s.lastError = ""
            }
            if !troubleLogged.isEmpty {
                logger.notice("upstream takes batches again", metadata: ["upstream": "\(client.targets.current)"])
                troubleLogged = ""
            }
            return retryAfterMs
        case .retry(let afterMs, let reason):
            state.withLock { s in
                s.reachable = !reason.hasPrefix("aggregator unreachable")
                s.lastError = reason
            }
            if reason != troubleLogged {
                logger.warning("upstream does not take batches now; the spool keeps them", metadata: [
                    "upstream": "\(client.targets.current)", "reason": "\(reason)", "spool_batches": "\(spool.snapshot.batches)"])
                troubleLogged = reason
            }
            try? await blocking { [spool] in try spool.recordAttempt(entry, error: reason) }
            return max(retryAfterMs ?? 0, afterMs)
        case .rejected(let reason), .identityTaken(let reason):
            try await blocking { [spool] in try spool.setAside(entry, reason: reason) }
            state.withLock { s in
                s.reachable = true
                s.lastError = reason
            }
            logger.error("upstream refused a batch for good; set aside in the relay spool", metadata: [
                "batch": "\(entry.identity)", "readings": "\(entry.readings)", "reason": "\(reason)", "spool": "\(spool.path)"])
            return retryAfterMs
        }
    }

    public func shutdown() async {
        try? await http.shutdown()
    }
}

/// Runs blocking SQLite work off Swift's cooperative pool.
private func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive { try work() }
}
