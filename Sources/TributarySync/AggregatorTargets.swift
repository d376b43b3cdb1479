import Synchronization
import TributaryRuntime

/// The aggregators one sender may deliver to (`aggregator.urls` on an agent, `upstream.urls` on
/// a relay), in that sender's order of preference, and which of them it is using now.
///
/// The order is rendezvous hashing of the sender's id with each URL: every sender ranks the
/// same list differently, so a fleet spreads evenly over the aggregators, and each sender keeps
/// its order whatever order the list is written in, and when an aggregator is added or removed
/// only the senders that preferred it move. A sender uses the first in its order until that one
/// fails (connection failure, timeout, 5xx), then the next; while it is away from its
/// preferred aggregator, it asks that one's `/readyz` every `failbackProbeMs`, and goes back
/// once it is ready (or once any request to it is answered).
///
/// Which aggregator took a batch does not matter for delivery: they share one sink and its
/// ledger, so a batch resent to another after a lost ack is answered duplicate there.
public final class AggregatorTargets: Sendable {
    /// The URLs, most preferred first.
    public let order: [String]
    public let failbackProbeMs: Int64

    /// A move from one aggregator to another, for the sender's log.
    public struct Move: Sendable {
        public let from: String
        public let to: String
        /// Why: the failure that moved the sender away, or nil when it went back to its preferred one.
        public let reason: String?
    }

    private struct State {
        var current = 0
        var failovers: UInt64 = 0
        /// The current aggregator answered since the sender moved to it: only then does moving
        /// away count as a failover (while every aggregator is down the sender goes round them,
        /// which is one outage, not many failovers).
        var currentAnswered = false
        var nextProbeMs: Int64 = 0
    }

    private let state = Mutex(State())
    private let onMove: @Sendable (Move) -> Void

    /// `urls` as configured (any order); `senderID` the gateway's or relay's id.
    public init(urls: [String], senderID: String, failbackProbeMs: Int64 = 10_000, onMove: @escaping @Sendable (Move) -> Void = { _ in }) {
        precondition(!urls.isEmpty, "at least one aggregator URL")
        order = Self.rendezvousOrder(urls, senderID: senderID)
        self.failbackProbeMs = failbackProbeMs
        self.onMove = onMove
    }

    /// The aggregator requests go to now.
    public var current: String { order[state.withLock { $0.current }] }
    /// Moves away from an aggregator that had answered, since the sender started.
    public var failovers: UInt64 { state.withLock { $0.failovers } }
    public var preferred: String { order[0] }

    /// Where requests go now.
    func next() -> String { current }

    /// The preferred aggregator, when the sender is away from it and a look at whether it is
    /// back is due (at most once every `failbackProbeMs`); nil otherwise. The caller asks it
    /// `/readyz` beside the traffic, so no batch waits on an aggregator that may still be gone.
    func claimProbe(nowMs: Int64 = MonotonicClock.nowMs()) -> String? {
        state.withLock { s in
            guard s.current != 0, nowMs >= s.nextProbeMs else { return nil }
            s.nextProbeMs = nowMs + failbackProbeMs
            return order[0]
        }
    }

    /// `url` answered (any answer but a 5xx): it is up. The preferred one answering brings the
    /// sender back to it.
    func answered(_ url: String) {
        let move: Move? = state.withLock { s in
            if url == order[s.current] {
                s.currentAnswered = true
                return nil
            }
            guard url == order[0] else { return nil }
            let from = order[s.current]
            s.current = 0
            s.currentAnswered = true
            return Move(from: from, to: url, reason: nil)
        }
        if let move { onMove(move) }
    }

    /// `url` did not answer, or answered 5xx. If it is the current aggregator, the sender moves
    /// to the next in its order; returns where the request may be tried again, or nil when
    /// there is no other (one aggregator, or `url` is a failed probe of the preferred one and
    /// the caller already tried the current one).
    func failed(_ url: String, reason: String, nowMs: Int64 = MonotonicClock.nowMs()) -> String? {
        guard order.count > 1 else { return nil }
        let (move, next): (Move?, String) = state.withLock { s in
            guard url == order[s.current] else {
                // A failed probe of the preferred one, or a request that left before another
                // moved the sender: go on with the current one.
                return (nil, order[s.current])
            }
            let from = url
            if s.currentAnswered { s.failovers += 1 }
            s.current = (s.current + 1) % order.count
            s.currentAnswered = false
            if s.current != 0 { s.nextProbeMs = nowMs + failbackProbeMs }
            return (Move(from: from, to: order[s.current], reason: reason), order[s.current])
        }
        if let move { onMove(move) }
        return next
    }

    /// The URLs ranked for `senderID` by rendezvous (highest random weight) hashing: each URL's
    /// score is a hash of the pair, highest first. Deterministic across hosts and releases
    /// (FNV-1a and a SplitMix64 finish, not Swift's seeded `Hasher`).
    public static func rendezvousOrder(_ urls: [String], senderID: String) -> [String] {
        urls.map { ($0, score(senderID, $0)) }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
            .map(\.0)
    }

    static func score(_ senderID: String, _ url: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in senderID.utf8 + [0] + url.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        // FNV-1a alone mixes its last bytes poorly: URLs that differ only in a port digit
        // would rank alike for most ids.
        hash ^= hash >> 30
        hash = hash &* 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 27
        hash = hash &* 0x94d0_49bb_1331_11eb
        hash ^= hash >> 31
        return hash
    }
}
