import Foundation
import NIOPosix
import TributaryCore
import TributaryRuntime
import TributaryAdminAPI
import TributarySinks
import TributaryWire

/// A relay's part in answering a batch: the spool takes it, within its quota, before the
/// gateway is answered. Used by `BatchIngestor`.
public struct RelayCustody: Sendable {
    public let spool: RelaySpool
    public let relayID: String
    public let maxHops: Int
    public let maxSpoolBytes: Int64
    /// False with `sink: none`: the spool is the only copy this relay keeps.
    public let keepsLocalCopy: Bool
    public let forwarder: UpstreamForwarder
    let maxAgeSeconds: Int

    public init(spool: RelaySpool, config: AggregatorConfig, forwarder: UpstreamForwarder) {
        self.spool = spool
        relayID = config.relayID
        maxHops = config.upstream?.maxHops ?? 8
        maxSpoolBytes = config.upstream?.maxSpoolBytes ?? 10 << 30
        maxAgeSeconds = config.upstream?.maxAgeSeconds ?? 600
        keepsLocalCopy = config.keepsLocalCopy
        self.forwarder = forwarder
    }

    /// A gateway's heartbeat: passed upstream, so the top tier sees idle gateways too.
    func noteHeartbeat(_ status: Tributary_V1_GatewayStatus) {
        forwarder.noteHeartbeat(status)
    }

    /// Whether the upstream answered its last request (429 while it does, 503 while it does not).
    func upstreamReachable() -> Bool { forwarder.upstream.reachable }

    /// The relay's part of `/metrics`.
    func metrics(into p: inout PrometheusText, nowMs: Int64) {
        let f = spool.snapshot
        let link = forwarder.upstream
        p.single("tributary_relay_spool_batches", .gauge, help: "Batches this relay holds and has not yet forwarded (set-aside ones not counted).", Double(f.batches))
        p.single("tributary_relay_spool_bytes", .gauge, help: "Bytes of those batches and their statuses (upstream.max_spool_bytes bounds it).", Double(f.bytes))
        p.single("tributary_relay_spool_readings", .gauge, help: "Readings in those batches.", Double(f.readings))
        p.single("tributary_relay_spool_oldest_age_seconds", .gauge,
                 help: "Age of the oldest batch not yet forwarded (0 when none); alert past upstream.max_age_seconds.",
                 f.oldestReceivedMs > 0 ? Double(max(0, nowMs - f.oldestReceivedMs)) / 1000 : 0)
        p.single("tributary_relay_spool_max_age_seconds", .gauge, help: "upstream.max_age_seconds: the age the alert compares with.", Double(maxAgeSeconds))
        p.single("tributary_relay_spool_set_aside_batches", .gauge, help: "Batches the upstream refused for good, kept in the spool for an operator.", Double(f.setAside))
        p.single("tributary_relay_forwarded_batches_total", .counter, help: "Batches the upstream acknowledged (accepted or duplicate).", Double(f.forwardedBatches))
        p.single("tributary_relay_forwarded_readings_total", .counter, help: "Readings in those batches.", Double(f.forwardedReadings))
        p.single("tributary_relay_upstream_up", .gauge, help: "1 when the upstream answered the relay's last request.", link.reachable ? 1 : 0)
        p.family("tributary_relay_upstream_requests_total", .counter, help: "The relay's requests to its upstream, by outcome.")
        let counts = forwarder.stats.requestCounts
        for outcome in RequestOutcome.allCases { p.sample("tributary_relay_upstream_requests_total", ["outcome": outcome.rawValue], counts[outcome, default: 0]) }
    }

    enum Decision: Sendable {
        case taken(RelaySpool.Taken)
        case refused(status: Int, reason: String, retryAfterMs: Int)
    }

    /// Commits the batch, verbatim, with the status it came with, or says why not.
    func take(_ request: Tributary_V1_SyncRequest, identity: BatchIdentity, digest: UInt64, batchBytes: [UInt8],
              readings: Int, oldestReadingMs: Int64, receivedAtMs: Int64) async -> Decision {
        let status: [UInt8]
        do {
            status = try request.status.serializedBytes()
        } catch {
            return .refused(status: 500, reason: "cannot encode the status for the spool: \(error)", retryAfterMs: 5000)
        }
        do {
            let taken = try await NIOThreadPool.singleton.runIfActive { [spool] in
                try spool.take(identity: identity, digest: digest, batch: batchBytes, status: status, readings: readings, receivedMs: receivedAtMs,
                               oldestReadingMs: oldestReadingMs, maxBytes: maxSpoolBytes)
            }
            if taken == .full {
                // The backlog waits in the gateways' own buffers, which are sized for it.
                let held = spool.snapshot.bytes
                return upstreamReachable()
                    ? .refused(status: 429, reason: "relay \(relayID) spool is at upstream.max_spool_bytes (\(held) bytes held); forwarding catches up", retryAfterMs: 5000)
                    : .refused(status: 503, reason: "relay \(relayID) spool is full (\(held) bytes) and its upstream is unreachable", retryAfterMs: 15_000)
            }
            if taken == .conflict {
                return .refused(status: 409, reason: "batch \(identity) is in relay \(relayID)'s spool with different contents", retryAfterMs: 0)
            }
            return .taken(taken)
        } catch {
            return .refused(status: 503, reason: "relay spool unavailable: \(error)", retryAfterMs: 5000)
        }
    }
}

/// The sink of a relay that keeps no copy of its own (`sink: none`): never written to (the
/// spool answers for it), always ready.
struct ForwardOnlySink: Sink {
    var description: String { "none (a relay that only forwards)" }
    func prepare() async throws(SinkError) {}
    func write(_ batch: IncomingBatch) async throws(SinkError) -> SinkWriteResult { .accepted }
    func readinessProblem() async -> String? { nil }
    var writeStats: SinkWriteStats { SinkWriteStats() }
    func close() async {}
}
