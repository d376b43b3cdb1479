import Testing
import TributaryCore
@testable import TributaryCtl

@Suite struct QueryAndCheckTests {
    @Test(arguments: [
        (FleetQuery.Order.id, ["gw-dam-07", "gw-harbour-01", "gw-pump-3"]),
        (.lag, ["gw-dam-07", "gw-harbour-01", "gw-pump-3"]),
        (.backlog, ["gw-dam-07", "gw-harbour-01", "gw-pump-3"]),
        (.lastSeen, ["gw-pump-3", "gw-dam-07", "gw-harbour-01"]),
    ])
    func sorting(_ order: FleetQuery.Order, _ expected: [String]) {
        #expect(FleetQuery(order: order).apply(Fixtures.fleet).map(\.gatewayID) == expected)
    }

    @Test func filters() {
        #expect(FleetQuery(onlyStale: true).apply(Fixtures.fleet).map(\.gatewayID) == ["gw-pump-3"])
        #expect(FleetQuery(laggingAtLeastMs: 60_000).apply(Fixtures.fleet).map(\.gatewayID) == ["gw-dam-07"])
        #expect(FleetQuery(laggingAtLeastMs: 500).apply(Fixtures.fleet).map(\.gatewayID) == ["gw-dam-07", "gw-harbour-01"])
        #expect(FleetQuery(onlyStale: true, laggingAtLeastMs: 1).apply(Fixtures.fleet).isEmpty)
    }

    @Test func checkPassesWithinThresholds() {
        let (code, lines) = FleetCheck(maxLagMs: 300_000, maxStale: 1).evaluate(Fixtures.fleet)
        #expect(code == .ok)
        #expect(lines == ["OK: 3 gateways, 1 stale, worst lag 4m10s"])
    }

    @Test func checkNamesEveryProblem() {
        var view = Fixtures.fleet
        view.admission.consecutiveSinkFailures = 4
        view.admission.lastSinkError = "ClickHouse unreachable"
        let (code, lines) = FleetCheck(maxLagMs: 60_000, maxStale: 0).evaluate(view)
        #expect(code == .critical)
        #expect(lines == [
            "CRITICAL: 3 problem(s)",
            "gateway gw-dam-07 is 4m10s behind (max 1m00s)",
            "1 gateways stale (max 0): gw-pump-3",
            "sink sqlite:/var/lib/tributary-aggregator/sink.sqlite failing: 4 writes in a row, last: ClickHouse unreachable",
        ])
        #expect(FleetCheck(sinkMustBeHealthy: false).evaluate(view).code == .ok)
    }

    @Test func sparklineScalesToTheLargestValue() {
        #expect(Sparkline.render([0, 1, 2, 4, 8], width: 5) == "▁▁▂▄█")
        #expect(Sparkline.render([3, 3], width: 4) == "  ██")
        #expect(Sparkline.render(Array(repeating: 1, count: 10), width: 3) == "███")
        #expect(Sparkline.render([], width: 2) == "  ")
    }

    @Test(arguments: [(Int64(0), "0ms"), (-35, "-35ms"), (2_400, "+2.4s"), (-59_949, "-59.9s"), (125_000, "+2m05s")])
    func skew(_ ms: Int64, _ text: String) {
        #expect(HumanUnits.signedDuration(ms: ms) == text)
    }

    @Test(arguments: [(UInt64(999), "999"), (12_345, "12.3k"), (4_100_000, "4.1M"), (999_999, "1.0M")])
    func counts(_ value: UInt64, _ text: String) {
        #expect(HumanUnits.count(value) == text)
    }

    @Test(arguments: [(Int64(250), "250ms"), (4_000, "4s"), (250_000, "4m10s"), (7_380_000, "2h03m"), (90_000_000, "1d01h")])
    func durations(_ ms: Int64, _ text: String) {
        #expect(HumanUnits.duration(ms: ms) == text)
    }

    @Test func tokenPrecedence() throws {
        let env = ["TRIBUTARY_TOKEN": "from-env"]
        #expect(try FleetClient.resolveToken(flag: "flag", file: nil, environment: env, defaultFile: "/nonexistent") == "flag")
        #expect(try FleetClient.resolveToken(flag: nil, file: nil, environment: env, defaultFile: "/nonexistent") == "from-env")
        #expect(try FleetClient.resolveToken(flag: nil, file: nil, environment: [:], defaultFile: "/nonexistent") == nil)
        #expect(throws: FleetClient.FetchError.self) {
            try FleetClient.resolveToken(flag: nil, file: "/nonexistent/token", environment: [:])
        }
    }
}
