import Synchronization
import TributaryCore
import TributaryRuntime
import TributarySync

/// Live facts about the agent that are not in the buffer file: connection state, the last
/// error, and samples for rates. Shared by the ingest and upload services.
public final class AgentStats: Sendable {
    private struct State {
        var brokerConnected = false
        var subscribed = false
        var bufferFull = false
        var lastError: String?
        var lastErrorMs: Int64 = 0
        var rateSample: (timeMs: Int64, ingested: Int64, acknowledged: Int64)?
        var ingestRate = 0.0
        var sendRate = 0.0
        var sparkplug: [SparkplugEvent: UInt64] = [:]
        var withheld: UInt64 = 0
    }

    /// What the Sparkplug B host side saw that operators should know of (counted since start).
    public enum SparkplugEvent: String, CaseIterable, Sendable {
        /// A seq out of order: messages were lost or reordered between edge node and agent.
        case sequenceGap = "sequence_gap"
        /// An NCMD `Node Control/Rebirth` sent to an edge node.
        case rebirthRequested = "rebirth_requested"
        /// A metric of a type not stored (data set, template, bytes) or of the wrong kind.
        case unsupportedMetric = "unsupported_metric"
        /// An NDEATH that was not the current session's (an old will): ignored.
        case staleDeath = "stale_death"
        /// An NBIRTH without bdSeq.
        case birthWithoutBdSeq = "birth_without_bdseq"
    }

    private let state = Mutex(State())
    /// What the requests to the aggregator came to (the uploader's `SyncClient` reports here).
    public let sync = SyncStats()

    public init() {}

    public func count(_ event: SparkplugEvent) {
        state.withLock { $0.sparkplug[event, default: 0] += 1 }
    }

    public var sparkplugCounts: [SparkplugEvent: UInt64] { state.withLock { $0.sparkplug } }

    /// Readings a subscription's `drop` rule kept from the buffer, since start: withheld on
    /// purpose, not lost, and counted so the fleet view can tell the two apart.
    public func countWithheld(_ readings: Int) {
        state.withLock { $0.withheld += UInt64(readings) }
    }

    public var withheldTotal: UInt64 { state.withLock { $0.withheld } }

    public var brokerConnected: Bool {
        get { state.withLock { $0.brokerConnected } }
        set { state.withLock { $0.brokerConnected = newValue } }
    }

    /// The broker confirmed the subscriptions at least once: from then on it keeps messages
    /// for the persistent session, even while the agent is away.
    public var subscribed: Bool {
        get { state.withLock { $0.subscribed } }
        set { state.withLock { $0.subscribed = newValue } }
    }

    /// The buffer is at its quota and ingest waits (the `block` policy, or a full disk).
    public var bufferFull: Bool {
        get { state.withLock { $0.bufferFull } }
        set { state.withLock { $0.bufferFull = newValue } }
    }

    public func recordError(_ message: String) {
        state.withLock {
            $0.lastError = message
            $0.lastErrorMs = WallClock.nowMs()
        }
    }

    public var lastError: (message: String, atMs: Int64)? {
        state.withLock { s in s.lastError.map { ($0, s.lastErrorMs) } }
    }

    /// Updates the rates from running totals; samples closer than a second apart are ignored.
    /// `monotonicMs` is a `MonotonicClock` reading, so a clock step cannot make a rate negative.
    public func rates(ingested: Int64, acknowledged: Int64, monotonicMs nowMs: Int64) -> (ingest: Double, send: Double) {
        state.withLock { s in
            if let sample = s.rateSample {
                let elapsed = Double(nowMs - sample.timeMs) / 1000
                guard elapsed >= 1 else { return (s.ingestRate, s.sendRate) }
                s.ingestRate = Double(ingested - sample.ingested) / elapsed
                s.sendRate = Double(acknowledged - sample.acknowledged) / elapsed
            }
            s.rateSample = (nowMs, ingested, acknowledged)
            return (s.ingestRate, s.sendRate)
        }
    }
}
