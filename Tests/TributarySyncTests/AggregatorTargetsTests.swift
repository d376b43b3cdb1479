import Testing
@testable import TributarySync

/// Which aggregator a sender uses: rendezvous order, failover, and the way back.
@Suite("aggregator failover")
struct AggregatorTargetsTests {
    static let urls = ["http://agg-a:8470", "http://agg-b:8470", "http://agg-c:8470"]

    @Test func theOrderDependsOnTheIdNotOnHowTheListIsWritten() {
        for id in ["gw-1", "gw-2", "plant-7/line-3"] {
            let order = AggregatorTargets.rendezvousOrder(Self.urls, senderID: id)
            #expect(Set(order) == Set(Self.urls))
            #expect(AggregatorTargets.rendezvousOrder(Self.urls.reversed(), senderID: id) == order)
        }
    }

    @Test func aFleetSpreadsEvenlyAndRemovingOneMovesOnlyItsGateways() {
        let ids = (0..<3000).map { "gw-\($0)" }
        var counts: [String: Int] = [:]
        for id in ids { counts[AggregatorTargets.rendezvousOrder(Self.urls, senderID: id)[0], default: 0] += 1 }
        // 1,000 each expected; a fair hash stays well within ±15%.
        #expect(counts.values.allSatisfy { (850...1150).contains($0) }, "\(counts)")
        let remaining = Array(Self.urls.dropLast())
        for id in ids {
            let before = AggregatorTargets.rendezvousOrder(Self.urls, senderID: id)[0]
            let after = AggregatorTargets.rendezvousOrder(remaining, senderID: id)[0]
            if before != Self.urls[2] { #expect(before == after, "\(id) moved though its aggregator stayed") }
        }
    }

    @Test func failsOverInOrderAndComesBackWhenThePreferredAnswers() {
        let targets = AggregatorTargets(urls: Self.urls, senderID: "gw-1", failbackProbeMs: 10_000)
        let order = targets.order
        #expect(targets.next() == order[0] && targets.claimProbe(nowMs: 0) == nil, "on the preferred one: nothing to probe")
        targets.answered(order[0])
        #expect(targets.failed(order[0], reason: "down", nowMs: 0) == order[1])
        #expect(targets.current == order[1] && targets.failovers == 1)
        // Requests stay on the second; the preferred one is looked at once per interval.
        #expect(targets.next() == order[1] && targets.claimProbe(nowMs: 5_000) == nil)
        #expect(targets.claimProbe(nowMs: 10_000) == order[0])
        #expect(targets.claimProbe(nowMs: 10_001) == nil, "one probe per interval")
        // A request that failed at the preferred one (sent before the move) leaves the sender where it is, uncounted.
        #expect(targets.failed(order[0], reason: "still down", nowMs: 10_002) == order[1])
        #expect(targets.current == order[1] && targets.failovers == 1)
        targets.answered(order[0])
        #expect(targets.current == order[0], "the preferred answered: back on it")
    }

    @Test func goingRoundWhileAllAreDownIsOneOutageNotManyFailovers() {
        let targets = AggregatorTargets(urls: Self.urls, senderID: "gw-1")
        for (index, url) in (targets.order + targets.order).enumerated() {
            _ = targets.failed(url, reason: "down", nowMs: Int64(index))
        }
        #expect(targets.failovers == 0)
        #expect(AggregatorTargets(urls: ["http://only:1"], senderID: "x").failed("http://only:1", reason: "down") == nil)
    }

    @Test func concurrentFailuresOfOneAggregatorMoveOnce() {
        let targets = AggregatorTargets(urls: Self.urls, senderID: "gw-1")
        let first = targets.order[0]
        targets.answered(first)
        let moves = (0..<8).map { _ in targets.failed(first, reason: "down", nowMs: 0) }
        #expect(Set(moves.compactMap { $0 }) == [targets.order[1]] && targets.failovers == 1)
    }
}
