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
        let joined = FleetMerge.merge([b, a])
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
        let table = FleetRendering.gatewaysTable(FleetMerge.merge([a, b]))
        #expect(table.contains("AGGREGATOR") && table.contains("FAILOVERS") && table.contains("agg-a:8470"), "\(table)")
        // One aggregator and no failovers: the columns stay away.
        #expect(!FleetRendering.gatewaysTable(Fixtures.fleet).contains("AGGREGATOR"))
    }

    @Test func anAggregatorThatDidNotAnswerIsCriticalAndNamed() {
        var joined = FleetMerge.merge(Array([Self.views().a]))
        joined.unanswered = ["http://agg-b:8470": "cannot reach the aggregator at http://agg-b:8470: connection refused"]
        let (code, lines) = FleetCheck(maxStale: nil).evaluate(joined)
        #expect(code == .critical && lines.contains { $0.contains("agg-b:8470 did not answer") }, "\(lines)")
        #expect(FleetRendering.status(joined, aggregator: "a, b").contains("NO ANSWER"))
    }
}
