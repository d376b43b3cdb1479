import Synchronization
import TributaryCore
import TributaryRuntime
import TributaryWire

/// Told by `SyncClient` what each request came to. Called from the request's task, so
/// implementations are thread-safe.
public protocol SyncObserver: Sendable {
    func requestFinished(_ outcome: RequestOutcome, after duration: Duration)
    /// A request timed on both ends (the aggregator's ack carries its receive and send times).
    func clockExchanged(_ exchange: ClockExchange)
}

/// The observer the agent and the fleet simulator use: counts per result, request times, and
/// the recent clock exchanges for the skew estimate the gateway status carries.
public final class SyncStats: SyncObserver {
    private struct State {
        var requests: [RequestOutcome: UInt64] = [:]
        var recentExchanges: [ClockExchange] = []
        /// The last answer was 401 or 403, and none has been taken since.
        var credentialsRefused = false
    }

    private let state = Mutex(State())
    /// Each request to the aggregator, send to answer.
    public let requestSeconds = LatencyHistogram()

    public init() {}

    public func requestFinished(_ outcome: RequestOutcome, after duration: Duration) {
        requestSeconds.record(duration)
        state.withLock { s in
            s.requests[outcome, default: 0] += 1
            switch outcome {
            case .unauthorized: s.credentialsRefused = true
            case .accepted, .duplicate, .heartbeat: s.credentialsRefused = false
            default: break
            }
        }
    }

    public func clockExchanged(_ exchange: ClockExchange) {
        state.withLock { s in
            s.recentExchanges.append(exchange)
            if s.recentExchanges.count > 8 { s.recentExchanges.removeFirst() }
        }
    }

    public var requestCounts: [RequestOutcome: UInt64] { state.withLock { $0.requests } }

    /// The aggregator refused this sender's credentials (401 or 403) last time, and has taken
    /// nothing from it since: its token, certificate or gateway id is wrong, and nothing is
    /// delivered until an operator fixes it.
    public var credentialsRefused: Bool { state.withLock { $0.credentialsRefused } }

    /// Of the last 8 timed requests, the one with the shortest round trip: like NTP's clock
    /// filter, it is the one least distorted by queueing and slow uploads.
    public var bestRecentExchange: ClockExchange? {
        state.withLock { $0.recentExchanges.min { $0.roundTripMs < $1.roundTripMs } }
    }
}
