import Synchronization
import TributaryCore

/// What became of a request to an aggregator, as counted in `/metrics` and the fleet
/// simulator's report.
public enum SyncResult: String, CaseIterable, Sendable {
    case accepted, duplicate, heartbeat
    /// 429: the aggregator is busy (backpressure).
    case busy
    /// 503 or another 5xx: its sink is down.
    case unavailable
    /// No answer: refused connection, timeout.
    case unreachable
    /// Refused for good (4xx); a batch is set aside.
    case rejected
    /// 401/403/404 and other answers that point at the configuration.
    case misdirected
}

/// Told by `SyncClient` what each request came to. Called from the request's task, so
/// implementations are thread-safe.
public protocol SyncObserver: Sendable {
    func requestFinished(_ result: SyncResult, after duration: Duration)
    /// A request timed on both ends (the aggregator's ack carries its receive and send times).
    func clockExchanged(_ exchange: ClockExchange)
}

/// The observer the agent and the fleet simulator use: counts per result, request times, and
/// the recent clock exchanges for the skew estimate the gateway status carries.
public final class SyncStats: SyncObserver {
    private struct State {
        var requests: [SyncResult: UInt64] = [:]
        var recentExchanges: [ClockExchange] = []
    }

    private let state = Mutex(State())
    /// Each request to the aggregator, send to answer.
    public let requestSeconds = LatencyHistogram()

    public init() {}

    public func requestFinished(_ result: SyncResult, after duration: Duration) {
        requestSeconds.record(duration)
        state.withLock { $0.requests[result, default: 0] += 1 }
    }

    public func clockExchanged(_ exchange: ClockExchange) {
        state.withLock { s in
            s.recentExchanges.append(exchange)
            if s.recentExchanges.count > 8 { s.recentExchanges.removeFirst() }
        }
    }

    public var requestCounts: [SyncResult: UInt64] { state.withLock { $0.requests } }

    /// Of the last 8 timed requests, the one with the shortest round trip: like NTP's clock
    /// filter, it is the one least distorted by queueing and slow uploads.
    public var bestRecentExchange: ClockExchange? {
        state.withLock { $0.recentExchanges.min { $0.roundTripMs < $1.roundTripMs } }
    }
}
