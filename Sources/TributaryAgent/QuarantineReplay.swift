import TributaryBuffer
import TributaryCore
import TributaryRuntime
import TributarySQLite

/// `tributary-agent quarantine replay`: the quarantined payloads decoded again with the
/// configuration in use now (after a template or decoder fix), through the path live messages
/// take (`MessageRouter`: the subscription's decoder, its rules, the reading limits, the
/// redelivery filter). What decodes now is appended to the buffer as received now and its
/// payload leaves the quarantine, in one transaction per step; what still fails stays, with
/// its new reason.
///
/// Run by whoever alone writes the quarantine: the running agent's committer thread (between
/// two group commits, with its own sessions), or the tool itself while it holds the data
/// directory's lock (the agent stopped). Never waits for room: at the buffer's quota it stops,
/// and the rest stays quarantined for a later replay.
struct QuarantineReplay {
    /// Payloads read and committed per step.
    static let stepSize = 500

    let buffer: BufferStore
    let router: MessageRouter
    /// `buffer.max_bytes` (0: none).
    let quotaBytes: Int64

    /// Replays the payloads whose topic `topic` matches (every one when nil). `sessions` are
    /// the router's, used on a copy: the replay recognises what the live window holds, but
    /// does not fill it (a replay of 70,000 payloads pushed every live message out of it, and a
    /// broker's replay after a crash was then stored twice), and a replayed old message moves no
    /// live Sparkplug session's sequence and asks no node for a rebirth. What interrupted
    /// replays stored is known too (`BufferStore.replayedKeys`).
    func run(topic: TopicFilter?, sessions: MessageRouter.Sessions) -> ReplaySummary {
        var summary = ReplaySummary()
        var scratch = sessions
        scratch.replayedSparkplug = RedeliveryFilter()
        var afterID: Int64 = 0
        do {
            scratch.redeliveryFilter.restore(try buffer.replayedKeys(), nowMs: MonotonicClock.nowMs())
            while true {
                let page = try buffer.quarantineEntries(afterID: afterID, limit: Self.stepSize)
                guard let last = page.last else { break }
                afterID = last.id
                let matching = page.filter { topic?.matches($0.topic) ?? true }
                guard !matching.isEmpty else { continue }
                if quotaBytes > 0, try buffer.quotaBytesInUse() >= quotaBytes {
                    summary.stopped = "the buffer is at its quota (buffer.max_bytes \(quotaBytes)); the rest stays quarantined: replay again once the backlog has drained"
                    break
                }
                var readings: [Reading] = []
                var released: [Int64] = []
                var still: [(id: Int64, reason: String)] = []
                var redeliveries = 0
                var storedKeys: [UInt8] = []
                var step = ReplaySummary()
                // Should the step not commit, the filters forget what it routed: kept, they
                // would take its payloads for copies of stored readings next time, and release
                // them with nothing stored.
                let before = scratch
                for entry in matching {
                    step.examined += 1
                    let result = router.route(topic: entry.topic, payload: entry.payload, receivedAtMs: entry.receivedAtMs,
                                              monotonicMs: MonotonicClock.nowMs(), into: &readings, sessions: &scratch)
                    switch result {
                    case .readings(let count, let withheld):
                        released.append(entry.id)
                        storedKeys += RedeliveryFilter.savedKey(topic: entry.topic, payload: entry.payload)
                        step.replayed += 1
                        step.readings += count
                        step.withheld += withheld
                    case .redelivery:
                        released.append(entry.id)
                        redeliveries += 1
                        step.redeliveries += 1
                    case .quarantined(let reason):
                        step.stillQuarantined += 1
                        if reason != entry.reason { still.append((entry.id, reason)) }
                        step.reasons[BufferStore.quarantineKind(reason), default: 0] += 1
                    }
                }
                do {
                    try buffer.commitReplay(readings: readings, released: released, redeliveries: redeliveries, stillQuarantined: still,
                                            replayedKeys: storedKeys)
                } catch {
                    scratch = before
                    throw error
                }
                summary.add(step)
            }
            // Every copy of what this replay stored was routed in it (copies share their topic,
            // so a topic filter takes them all).
            if summary.stopped == nil { try buffer.clearReplayedKeys() }
        } catch {
            // What the steps before committed stays: each is whole. This step is not stored,
            // and its payloads stay quarantined.
            summary.stopped = "buffer error: \(error)"
        }
        return summary
    }
}

/// What a replay did, as the tool prints it (`--json` gives these keys).
public struct ReplaySummary: Codable, Sendable, Equatable {
    /// Quarantined payloads routed again.
    public var examined = 0
    /// Payloads that decode now: their readings are in the buffer, they left the quarantine.
    public var replayed = 0
    /// Readings they gave.
    public var readings = 0
    /// Readings the subscriptions' rules dropped (as for live messages).
    public var withheld = 0
    /// Payloads whose readings were stored already (the same bytes replayed or received
    /// before): they left the quarantine with nothing appended.
    public var redeliveries = 0
    /// Payloads that still fail, kept with their new reason.
    public var stillQuarantined = 0
    /// Those, by kind of reason.
    public var reasons: [String: Int] = [:]
    /// Why the replay stopped before the end, if it did (what it counted above is committed;
    /// the rest stays quarantined).
    public var stopped: String?

    public init() {}

    mutating func add(_ step: ReplaySummary) {
        examined += step.examined
        replayed += step.replayed
        readings += step.readings
        withheld += step.withheld
        redeliveries += step.redeliveries
        stillQuarantined += step.stillQuarantined
        reasons.merge(step.reasons, uniquingKeysWith: +)
    }

    enum CodingKeys: String, CodingKey {
        case examined, replayed, readings, withheld, redeliveries, reasons, stopped
        case stillQuarantined = "still_quarantined"
    }
}
