import Foundation
import Testing
import TributaryCore
import TributaryAdminAPI
@testable import TributaryCtl
import TributaryTesting

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
        #expect(lines == ["OK: 3 gateways, 1 stale, worst lag 4m12s"])
    }

    @Test func checkNamesEveryProblem() {
        var view = Fixtures.fleet
        view.admission.consecutiveSinkFailures = 4
        view.admission.lastSinkError = "ClickHouse unreachable"
        let (code, lines) = FleetCheck(maxLagMs: 60_000, maxStale: 0).evaluate(view)
        #expect(code == .critical)
        #expect(lines == [
            "CRITICAL: 3 problem(s)",
            "gateway gw-dam-07 is 4m12s behind (max 1m00s)",
            "1 gateways stale (max 0): gw-pump-3",
            "sink sqlite:/var/lib/tributary-aggregator/sink.sqlite failing: 4 writes in a row, last: ClickHouse unreachable",
        ])
        #expect(FleetCheck(maxStale: 1, sinkMustBeHealthy: false).evaluate(view).code == .ok)
        // A bare check: the stale gateway alone fails it (lag is not checked without --max-lag).
        #expect(FleetCheck().evaluate(Fixtures.fleet).lines == ["CRITICAL: 1 problem(s)", "1 gateways stale (max 0): gw-pump-3"])
    }

    /// A registry the aggregator cannot write (a full disk) is CRITICAL and in `status`: its
    /// counts and chains are in memory only, and a crash would lose them (attack round 10).
    @Test func anUnwritableRegistryIsCritical() {
        var view = Fixtures.fleet
        view.registryWriteError = "database or disk is full"
        let (code, lines) = FleetCheck(maxStale: 1).evaluate(view)
        #expect(code == .critical)
        #expect(lines.contains { $0.hasPrefix("the fleet registry cannot be written (database or disk is full)") }, "\(lines)")
        #expect(FleetRendering.status(view, aggregator: "a").contains("REGISTRY     cannot be written: database or disk is full"))
        #expect(!FleetRendering.status(Fixtures.fleet, aggregator: "a").contains("REGISTRY"))
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

    /// A gateway can put anything in its status; none of it may reach the terminal as control
    /// characters (an OSC 52 sequence would write the operator's clipboard), and odd numbers
    /// must not crash the renderer.
    @Test func hostileStatusIsRenderedHarmlessly() {
        var view = Fixtures.fleet
        view.gateways[0].lastError = "boom\u{1B}]52;c;ZWNobyBwd25lZA==\u{07}\u{9B}31m"
        view.gateways[0].agentVersion = "0.1\u{1B}[2J"
        view.gateways[0].ingestRate = .nan
        view.gateways[1].ingestRate = .infinity
        view.gateways[0].backlogReadings = .max
        view.gateways[1].backlogReadings = .max
        view.gateways[0].lastErrorMs = .min
        view.gateways[0].clockSkewMs = .max
        var detail = Fixtures.detail
        detail.gateway = view.gateways[0]
        let outputs = [FleetRendering.status(view, aggregator: "a"), FleetRendering.gatewaysTable(view), FleetRendering.gatewayDetail(detail),
                       WatchScreen.render(view, history: WatchHistory(), aggregator: "a", clock: "c", intervalSeconds: 1,
                                          width: 200, height: 30).joined(separator: "\n")]
        for output in outputs {
            #expect(!output.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || (0x7F...0x9F).contains($0.value) }, "\(output)")
        }
        #expect(outputs[1].contains("boom?]52;c;ZWNobyBwd25lZA==??31m"))
        #expect(outputs[1].contains("?/s"))
    }

    @Test func tokenPrecedence() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let aggregatorsOwn = try dir.writeSecret("admin-token", "0123456789abcdef0123\n")
        let env = ["TRIBUTARY_TOKEN": "from-env"]
        #expect(try FleetClient.resolveToken(flag: "flag", file: nil, environment: env, defaultFile: "/nonexistent") == "flag")
        #expect(try FleetClient.resolveToken(flag: nil, file: nil, environment: env, defaultFile: "/nonexistent") == "from-env")
        #expect(try FleetClient.resolveToken(flag: nil, file: nil, environment: [:], defaultFile: "/nonexistent") == nil)
        #expect(try FleetClient.resolveToken(flag: nil, file: nil, environment: [:], defaultFile: aggregatorsOwn) == "0123456789abcdef0123")
        #expect(try FleetClient.resolveToken(flag: nil, file: nil, environment: [:], defaultFile: "/etc/hostname") == nil, "a file every user can read is no token")
        #expect(try FleetClient.resolveToken(flag: nil, file: nil, environment: ["TRIBUTARY_TOKEN_FILE": ""], defaultFile: aggregatorsOwn) == nil,
                "an empty TRIBUTARY_TOKEN_FILE turns the default file off")
        #expect(throws: FleetClient.FetchError.self) {
            try FleetClient.resolveToken(flag: nil, file: "/nonexistent/token", environment: [:])
        }
    }

    /// A newer tributaryctl reads an older aggregator's gateways: no withheld_total, no chain.
    @Test func olderAggregatorJSONStillDecodes() throws {
        let gateway = Fixtures.fleet.gateways[1]
        var object = try #require(try JSONSerialization.jsonObject(with: try JSONEncoder().encode(gateway)) as? [String: Any])
        object["withheld_total"] = nil
        object["chain"] = nil
        let decoded = try JSONDecoder().decode(GatewayView.self, from: try JSONSerialization.data(withJSONObject: object))
        var expected = gateway
        expected.withheldTotal = 0
        expected.chain = nil
        #expect(decoded == expected)
        #expect(try JSONDecoder().decode(GatewayView.self, from: try JSONEncoder().encode(gateway)) == gateway)
    }
}

/// Issue 24: `tributaryctl --aggregator URL status` failed with "Unknown option '--aggregator'".
@Suite("shared options before the subcommand")
struct GlobalOptionsTests {
    static let subcommands: Set<String> = ["status", "gateways", "gateway", "watch", "check"]

    @Test(arguments: [
        (["--aggregator", "http://a:1", "status"], ["status", "--aggregator", "http://a:1"]),
        (["--token=t", "--json", "gateway", "gw-1"], ["gateway", "--token=t", "--json", "gw-1"]),
        (["--ca-file", "ca.pem", "--token-file", "f", "gateways", "--sort", "lag"], ["gateways", "--ca-file", "ca.pem", "--token-file", "f", "--sort", "lag"]),
        (["status", "--aggregator", "http://a:1"], ["status", "--aggregator", "http://a:1"]),
        (["--help"], ["--help"]),
        (["--aggregator"], ["--aggregator"]),
        (["--bogus", "status"], ["--bogus", "status"]),
    ] as [([String], [String])])
    func sharedOptionsMoveAfterTheSubcommand(_ given: [String], _ expected: [String]) {
        #expect(GlobalOptions.reorder(given, subcommands: Self.subcommands) == expected)
    }
}
