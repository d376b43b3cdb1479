import Foundation
import Testing
import TributaryBuffer
import TributaryCore
import TributaryTesting
@testable import TributaryAgent

/// `quarantine replay` on a real buffer file, with the router alone (no broker, no agent).
@Suite("quarantine replay")
struct QuarantineReplayTests {
    static func payload(_ topic: String, _ text: String, reason: String = "topic does not match template") -> QuarantinedPayload {
        QuarantinedPayload(topic: topic, payload: Array(text.utf8), reason: reason, receivedAtMs: 1_700_000_000_000)
    }

    /// Quarantined under a template one level too deep: two payloads of one sensor (one of them
    /// twice, the same bytes), one that is no JSON, one of a topic no subscription takes.
    static func quarantined(_ buffer: BufferStore) throws {
        try buffer.append([], quarantined: [
            payload("plant/gw/s1", #"{"ts":1000,"t":1}"#),
            payload("plant/gw/s1", #"{"ts":1000,"t":1}"#),
            payload("plant/gw/s2", #"{"ts":2000,"t":2,"h":3}"#),
            payload("plant/gw/s3", "{not json"),
            payload("other/x", "1", reason: "no subscription matches the topic"),
        ])
    }

    static func fixedRouter() throws -> MessageRouter {
        try MessageRouter(subscriptions: [AgentConfig.Subscription(topic: "plant/#", template: try TopicTemplate("plant/{gateway}/{sensor}"),
                                                                   format: .json, timeField: "ts")],
                          gatewayID: "gw", hashKey: nil)
    }

    /// A replay killed after a step that stored a payload, whose second copy waits in a later
    /// step: the next replay, with a fresh filter (a new tool, or an agent restarted after a
    /// SIGKILL), still recognises the copy (attack round 14 stored it twice: the window was
    /// saved only at the end of a replay).
    @Test func aCopyLeftByAnInterruptedReplayIsNotStoredAgain() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        let twice = Self.payload("plant/gw/s1", #"{"ts":1000,"t":1}"#)
        try buffer.append([], quarantined: [twice, twice])
        let entries = try buffer.quarantineEntries(limit: 10)
        #expect(entries.count == 2)
        // What the interrupted replay's first step committed: the first copy's reading, and its key.
        var readings: [Reading] = []
        var scratch = MessageRouterTests.sessions()
        _ = try Self.fixedRouter().route(topic: twice.topic, payload: twice.payload, receivedAtMs: 1, monotonicMs: 1,
                                         into: &readings, sessions: &scratch)
        try buffer.commitReplay(readings: readings, released: [entries[0].id], redeliveries: 0, stillQuarantined: [],
                                replayedKeys: RedeliveryFilter.savedKey(topic: twice.topic, payload: twice.payload))
        let next = QuarantineReplay(buffer: buffer, router: try Self.fixedRouter(), quotaBytes: 0)
            .run(topic: nil, sessions: MessageRouterTests.sessions())
        #expect(next.redeliveries == 1 && next.replayed == 0, "\(next)")
        #expect(buffer.snapshot.ingestedTotal == 1, "the reading once")
        #expect(try buffer.replayedKeys().isEmpty, "a replay that ended whole forgets them")
    }

    @Test func whatDecodesNowIsBufferedOnceAndTheRestStaysWithItsNewReason() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        try Self.quarantined(buffer)
        let sessions = MessageRouterTests.sessions()
        let replay = QuarantineReplay(buffer: buffer, router: try Self.fixedRouter(), quotaBytes: 0)
        let summary = replay.run(topic: nil, sessions: sessions)
        #expect(summary.examined == 5 && summary.replayed == 2 && summary.readings == 3 && summary.redeliveries == 1
                && summary.stillQuarantined == 2 && summary.stopped == nil, "\(summary)")
        let left = try buffer.quarantineEntries(limit: 10)
        #expect(left.map(\.topic) == ["plant/gw/s3", "other/x"])
        #expect(left[0].reason.hasPrefix("invalid JSON"), "the new reason: \(left[0].reason)")
        #expect(left[1].reason == "no subscription matches the topic")
        let counters = buffer.snapshot
        #expect(counters.ingestedTotal == 3 && counters.unsealedReadings == 3, "replayed readings count as received")
        #expect(counters.quarantinedTotal == 5, "each payload counted once, when first quarantined")
        #expect(counters.quarantineHeld == 2 && counters.quarantineReplayedTotal == 3 && counters.redeliveriesTotal == 1)

        // Again: only what is left, and it still fails; nothing is buffered twice.
        let again = replay.run(topic: nil, sessions: sessions)
        #expect(again.examined == 2 && again.replayed == 0 && again.stillQuarantined == 2)
        #expect(buffer.snapshot.ingestedTotal == 3)
        _ = try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 0)
        let sealed = try buffer.claimBatches(limit: 10, forSending: false)
        #expect(sealed.map(\.readingCount) == [3])
        buffer.release(sealed.map(\.identity.sequence))

        // What is on disk says the same as what was in memory.
        buffer.close()
        let reopened = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        defer { reopened.close() }
        let stored = reopened.snapshot
        #expect(stored.quarantinedTotal == 5 && stored.quarantineHeld == 2 && stored.quarantineReplayedTotal == 3
                && stored.ingestedTotal == 3 && stored.redeliveriesTotal == 1)
    }

    @Test func aTopicFilterReplaysOnlyItsTopicsAndTheQuotaStopsAReplayWithNothingLost() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        defer { buffer.close() }
        try Self.quarantined(buffer)
        let sessions = MessageRouterTests.sessions()
        let full = QuarantineReplay(buffer: buffer, router: try Self.fixedRouter(), quotaBytes: 1)
            .run(topic: nil, sessions: sessions)
        #expect(full.stopped?.contains("quota") == true && full.examined == 0, "\(full)")
        #expect(buffer.snapshot.quarantineHeld == 5)

        let one = QuarantineReplay(buffer: buffer, router: try Self.fixedRouter(), quotaBytes: 0)
            .run(topic: TopicFilter("plant/+/s2"), sessions: sessions)
        #expect(one.examined == 1 && one.replayed == 1 && one.readings == 2, "\(one)")
        #expect(try buffer.quarantineEntries(limit: 10).map(\.topic) == ["plant/gw/s1", "plant/gw/s1", "plant/gw/s3", "other/x"])
    }

    @Test func purgeDeletesByAgeAndTopicAndCountsIt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        defer { buffer.close() }
        try Self.quarantined(buffer)
        #expect(try buffer.purgeQuarantine(receivedBeforeMs: 1_700_000_000_000) == 0, "received at that time: not before it")
        #expect(try buffer.purgeQuarantine(receivedBeforeMs: 1_700_000_000_001, topic: TopicFilter("plant/+/s1")) == 2)
        #expect(try buffer.purgeQuarantine(receivedBeforeMs: .max) == 3)
        let counters = buffer.snapshot
        #expect(counters.quarantineHeld == 0 && counters.quarantinePurgedTotal == 5 && counters.quarantinedTotal == 5)
    }
}
