import Testing
@testable import TributaryAgent

@Suite("MQTT redelivery filter")
struct RedeliveryFilterTests {
    let payload = Array(#"{"ts":1700000000123,"t":21.5}"#.utf8)

    @Test func theSameMessageAgainIsARedelivery() {
        var filter = RedeliveryFilter()
        let r1 = filter.isRedelivery(topic: "a/b", payload: payload, nowMs: 0)
        #expect(!r1)
        let r2 = filter.isRedelivery(topic: "a/b", payload: payload, nowMs: 10)
        #expect(r2)
        let r3 = filter.isRedelivery(topic: "a/c", payload: payload, nowMs: 10)
        #expect(!r3, "another topic is another sensor")
        let r4 = filter.isRedelivery(topic: "a/b", payload: payload + [0x20], nowMs: 10)
        #expect(!r4, "other bytes are another message")
    }

    @Test func whereTopicEndsAndPayloadBeginsCounts() {
        var filter = RedeliveryFilter()
        let first = filter.isRedelivery(topic: "a/b1", payload: Array("23456789".utf8), nowMs: 0)
        let second = filter.isRedelivery(topic: "a/b", payload: Array("123456789".utf8), nowMs: 0)
        #expect(!first && !second)
        // Payloads around the 8-byte steps the digest takes, each seen once and then again.
        let payloads = (0..<20).map { Array(repeating: UInt8(ascii: "x"), count: $0) }
        #expect(payloads.allSatisfy { !filter.isRedelivery(topic: "t", payload: $0, nowMs: 1) })
        #expect(payloads.allSatisfy { filter.isRedelivery(topic: "t", payload: $0, nowMs: 2) })
    }

    /// What a stopping agent saves and the next start takes back: the last minute's messages.
    @Test func theWindowOutlivesARestart() {
        var before = RedeliveryFilter()
        for i in 0..<100 { _ = before.isRedelivery(topic: "t\(i)", payload: payload, nowMs: Int64(i) * 1000) }
        let saved = before.saved(nowMs: 99_000)
        #expect(saved.count == 61 * 16, "the messages of the last 60 s, 16 bytes each")
        var after = RedeliveryFilter()
        after.restore(saved, nowMs: 5)
        let newest = after.isRedelivery(topic: "t99", payload: payload, nowMs: 6)
        let minuteOld = after.isRedelivery(topic: "t39", payload: payload, nowMs: 6)
        let older = after.isRedelivery(topic: "t38", payload: payload, nowMs: 6)
        #expect(newest && minuteOld)
        #expect(!older, "older than a minute at the stop: not kept")
    }

    @Test func theWindowIsBoundedInCountAndAge() {
        var filter = RedeliveryFilter(capacity: 3, maxAgeMs: 1000)
        for i in 0..<5 { _ = filter.isRedelivery(topic: "t\(i)", payload: payload, nowMs: 0) }
        #expect(filter.count == 3)
        let r5 = filter.isRedelivery(topic: "t0", payload: payload, nowMs: 1)
        #expect(!r5, "evicted by count")
        let r6 = filter.isRedelivery(topic: "t4", payload: payload, nowMs: 1)
        #expect(r6)
        let r7 = filter.isRedelivery(topic: "t4", payload: payload, nowMs: 5000)
        #expect(!r7, "too old to be a redelivery")
    }

    /// A broker that crashed replays, oldest first, everything it delivered since its last
    /// autosave: 40,000 messages in the review's drain, which an 8,192-message window forgot
    /// before the replay reached them (77,765 readings stored twice).
    @Test func aCrashedBrokersReplayOfFortyThousandMessagesIsRecognised() {
        var filter = RedeliveryFilter()
        let messages = (0..<40_000).map { i in ("sensors/gw/s\(i % 25)", Array("{\"ts\":\(1_790_000_000_000 + i),\"t\":\(i % 300)}".utf8)) }
        var firstTimes = 0, recognised = 0
        for (topic, payload) in messages where !filter.isRedelivery(topic: topic, payload: payload, nowMs: 1000) { firstTimes += 1 }
        for (topic, payload) in messages where filter.isRedelivery(topic: topic, payload: payload, nowMs: 2000) { recognised += 1 }
        #expect(firstTimes == 40_000 && recognised == 40_000)
    }

    @Test func aMessageSeenAgainAfterItsWindowStaysRemembered() {
        var filter = RedeliveryFilter(capacity: 10, maxAgeMs: 100)
        _ = filter.isRedelivery(topic: "t", payload: payload, nowMs: 0)
        let late = filter.isRedelivery(topic: "t", payload: payload, nowMs: 500)
        #expect(!late, "too old: a new reading")
        for i in 0..<5 { _ = filter.isRedelivery(topic: "u\(i)", payload: payload, nowMs: 510) }
        let again = filter.isRedelivery(topic: "t", payload: payload, nowMs: 520)
        #expect(again, "the old entry's eviction did not take the new one")
    }
}
