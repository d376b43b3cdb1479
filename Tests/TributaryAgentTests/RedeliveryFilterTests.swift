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
}
