import Foundation
import Testing
import TributaryAdminAPI
import TributaryCore
import TributaryCtl

/// `tributaryctl --aggregator A --aggregator B`: two aggregators' views of one fleet, joined.
@Suite("fleet views joined")
struct FleetMergeTests {
    /// The fixture fleet as aggregator A saw it, and B's view of the one gateway that failed
    /// over to B and is back on A: its latest status is A's, its batches counted at both.
    static func views() -> (a: FleetView, b: FleetView) {
        var a = Fixtures.fleet
        a.gateways = a.gateways.map { g in
            var g = g
            if g.gatewayID == "gw-harbour-01" {
                g.aggregator = "http://agg-a:8470"
                g.failovers = 1
            }
            return g
        }
        var atB = GatewayView(gatewayID: "gw-harbour-01")
        atB.lastSeenMs = Fixtures.nowMs - 60_000
        atB.readingsSynced = 5_000
        atB.batchesSynced = 10
        atB.duplicateBatches = 2
        atB.aggregator = "http://agg-b:8470"
        atB.failovers = 1
        atB.lastBatchMs = Fixtures.nowMs - 60_000
        var b = FleetView(generatedAtMs: Fixtures.nowMs - 5, staleAfterSeconds: a.staleAfterSeconds, sink: a.sink, gateways: [atB])
        b.sinkWrites.batches = 10
        b.admission.consecutiveSinkFailures = 0
        return (a, b)
    }

    @Test func eachGatewayOnceWithItsLatestStatusAndSummedCounts() {
        let (a, b) = Self.views()
        let joined = FleetMerge.merge([b, a], nowMs: a.generatedAtMs)
        #expect(joined.gateways.map(\.gatewayID) == a.gateways.map(\.gatewayID).sorted())
        let g = joined.gateways.first { $0.gatewayID == "gw-harbour-01" }!
        let original = a.gateways.first { $0.gatewayID == "gw-harbour-01" }!
        #expect(g.readingsSynced == original.readingsSynced + 5_000 && g.batchesSynced == original.batchesSynced + 10)
        #expect(g.duplicateBatches == original.duplicateBatches + 2)
        #expect(g.aggregator == "http://agg-a:8470" && g.lastSeenMs == original.lastSeenMs, "the latest status wins")
        #expect(joined.generatedAtMs == a.generatedAtMs && joined.sink == a.sink)
        #expect(joined.sinkWrites.batches == a.sinkWrites.batches + 10)
        #expect(FleetTotals(joined).gateways == FleetTotals(a).gateways)
    }

    @Test func theTableShowsWhichAggregatorAndHowManyFailovers() {
        let (a, b) = Self.views()
        let table = FleetRendering.gatewaysTable(FleetMerge.merge([a, b], nowMs: a.generatedAtMs))
        #expect(table.contains("AGGREGATOR") && table.contains("FAILOVERS") && table.contains("agg-a:8470"), "\(table)")
        // One aggregator and no failovers: the columns stay away.
        #expect(!FleetRendering.gatewaysTable(Fixtures.fleet).contains("AGGREGATOR"))
    }

    @Test func anAggregatorThatDidNotAnswerIsCriticalAndNamed() {
        var joined = FleetMerge.merge([Self.views().a], nowMs: Fixtures.nowMs)
        joined.unanswered = ["http://agg-b:8470": "cannot reach the aggregator at http://agg-b:8470: connection refused"]
        let (code, lines) = FleetCheck(maxStale: nil).evaluate(joined)
        #expect(code == .critical && lines.contains { $0.contains("agg-b:8470 did not answer") }, "\(lines)")
        #expect(FleetRendering.status(joined, aggregator: "a, b").contains("NO ANSWER"))
    }
}

/// Attack round 8: an aggregator whose clock is 10 minutes ahead must not make its older
/// entry look like the latest (a healthy gateway shown stale, `check` CRITICAL).
@Suite("fleet views joined: clocks")
struct FleetMergeClockTests {
    @Test func theLatestIsTheMostRecentlyHeardNotTheFurthestAheadClock() {
        let now: Int64 = 1_795_000_000_000
        var old = GatewayView(gatewayID: "gw-1")
        old.lastSeenMs = now + 600_000 - 60_000      // A heard it 60 s ago, on A's clock (10 min ahead)
        old.stale = true
        old.aggregator = "http://agg-a:8470"
        old.backlogReadings = 10
        var fresh = GatewayView(gatewayID: "gw-1")
        fresh.lastSeenMs = now - 1_000                // B heard it 1 s ago
        fresh.aggregator = "http://agg-b:8470"
        let a = FleetView(generatedAtMs: now + 600_000, staleAfterSeconds: 20, sink: "s", gateways: [old])
        let b = FleetView(generatedAtMs: now, staleAfterSeconds: 20, sink: "s", gateways: [fresh])
        let joined = FleetMerge.merge([a, b], nowMs: now)
        let g = joined.gateways[0]
        #expect(g.aggregator == "http://agg-b:8470" && !g.stale && g.backlogReadings == 0, "\(g)")
        #expect(g.lastSeenMs == now - 1_000 && joined.generatedAtMs == now)
        #expect(FleetCheck().evaluate(joined).code == .ok, "\(FleetCheck().evaluate(joined).lines)")
    }
}
