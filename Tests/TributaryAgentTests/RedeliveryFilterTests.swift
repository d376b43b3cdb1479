import Testing
import TributaryCrypto
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
    /// The saved form is what earlier agents saved and later ones restore: the first 16 bytes of
    /// SHA-256(topic, 0, payload).
    @Test func theSavedFormIsTheDigestsFirstSixteenBytes() {
        var filter = RedeliveryFilter()
        _ = filter.isRedelivery(topic: "a/b", payload: payload, nowMs: 0)
        let digest = BatchChain.digest(of: Array("a/b".utf8) + [0] + payload)
        #expect(filter.saved(nowMs: 0) == Array(digest.prefix(16)))
    }

    /// The ring and its index against the plain model they replaced (a dictionary of last
    /// sightings and an eviction queue), on random traffic with repeats, expiries, a small
    /// window that wraps many times, and a save and restore midway.
    @Test(arguments: [1, 3, 7, 64, 1000])
    func theRingAgreesWithThePlainModel(capacity: Int) {
        var generator = SplitMix(seed: UInt64(capacity))
        var filter = RedeliveryFilter(capacity: capacity, maxAgeMs: 50)
        var model = PlainWindow(capacity: capacity, maxAgeMs: 50)
        var now: Int64 = 0
        var agreed = 0
        for step in 0..<20_000 {
            now += Int64(generator.next() % 3)
            let topic = "t\(generator.next() % UInt64(capacity * 2 + 3))"
            let payload = [UInt8(truncatingIfNeeded: generator.next() % 4)]
            let expected = model.isRedelivery(topic + "\u{0}" + String(payload[0]), nowMs: now)
            let actual = filter.isRedelivery(topic: topic, payload: payload, nowMs: now)
            #expect(actual == expected, "step \(step)")
            if actual == expected { agreed += 1 }
            #expect(filter.count == model.count, "step \(step)")
            if step == 10_000 {
                let saved = filter.saved(nowMs: now, withinMs: 1_000_000)
                filter = RedeliveryFilter(capacity: capacity, maxAgeMs: 50)
                filter.restore(saved, nowMs: now)
                model.keepOnly(nowMs: now)
                #expect(filter.count == model.count)
            }
        }
        #expect(agreed == 20_000)
    }
}

/// The filter as it was first written: what the ring must agree with.
private struct PlainWindow {
    let capacity: Int
    let maxAgeMs: Int64
    var seen: [String: Int64] = [:]
    var order: [(key: String, atMs: Int64)] = []
    var count: Int { seen.count }

    mutating func isRedelivery(_ key: String, nowMs: Int64) -> Bool {
        if let at = seen[key], nowMs - at <= maxAgeMs { return true }
        seen[key] = nowMs
        order.append((key, nowMs))
        while let oldest = order.first, order.count > capacity || nowMs - oldest.atMs > maxAgeMs {
            if seen[oldest.key] == oldest.atMs { seen[oldest.key] = nil }
            order.removeFirst()
        }
        return false
    }

    /// What a save and restore at `nowMs` keeps: each key still held, seen again at `nowMs`.
    mutating func keepOnly(nowMs: Int64) {
        let kept = order.filter { seen[$0.key] == $0.atMs }.map(\.key)
        seen = [:]
        order = []
        for key in kept {
            seen[key] = nowMs
            order.append((key, nowMs))
        }
    }
}

private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
