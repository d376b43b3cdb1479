import Testing
import TributaryAdminAPI
@testable import TributaryAggregator
import TributaryCore

/// `/metrics` at province scale: per-gateway series only for the gateways `metrics.per_gateway`
/// names, and the whole fleet always in a few histograms and totals.
@Suite("aggregator metrics: cardinality")
struct AggregatorMetricsTests {
    static let now: Int64 = 1_795_000_000_000

    /// 50 gateways: gw-00..gw-49, gateway i behind by i seconds with a backlog of 10 i; every
    /// tenth stale; each has dropped one reading.
    static var fleet: FleetView {
        let gateways = (0..<50).map { i -> GatewayView in
            var g = GatewayView(gatewayID: String(format: "gw-%02d", i))
            g.lastSeenMs = now - (i % 10 == 0 ? 600_000 : 1_000)
            g.stale = i % 10 == 0
            g.oldestUnsentMs = i == 0 ? 0 : now - Int64(i) * 1000
            g.roundTripMs = 0
            g.backlogReadings = UInt64(10 * i)
            g.droppedTotal = 1
            return g
        }
        return FleetView(generatedAtMs: now, staleAfterSeconds: 120, sink: "s", gateways: gateways)
    }

    static func series(_ text: String, _ name: String) -> [Substring] {
        text.split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
    }

    @Test func topNGivesSeriesToTheGatewaysMostInTroubleOnly() {
        let text = AggregatorMetrics().render(Self.fleet, sinkUp: true, perGateway: .top(8))
        let lag = Self.series(text, "tributary_gateway_lag_seconds")
        #expect(lag.count == 8)
        // The five stale ones first, then the three most behind.
        for id in ["gw-00", "gw-10", "gw-20", "gw-30", "gw-40", "gw-49", "gw-48", "gw-47"] {
            #expect(lag.contains { $0.contains("gateway=\"\(id)\"") }, "\(id) in \(lag)")
        }
        #expect(text.contains("tributary_gateway_series{gateways=\"shown\"} 8") && text.contains("tributary_gateway_series{gateways=\"all\"} 50"))
        #expect(Self.series(AggregatorMetrics().render(Self.fleet, sinkUp: true, perGateway: .none), "tributary_gateway_stale").isEmpty)
        #expect(Self.series(AggregatorMetrics().render(Self.fleet, sinkUp: true, perGateway: .all), "tributary_gateway_stale").count == 50)
        #expect(Self.series(AggregatorMetrics().render(Self.fleet, sinkUp: true, perGateway: .top(1000)), "tributary_gateway_stale").count == 50)
    }

    @Test func theFleetIsAlwaysThereInHistogramsAndTotals() {
        let text = AggregatorMetrics().render(Self.fleet, sinkUp: true, perGateway: .none)
        #expect(text.contains("tributary_fleet_lag_seconds_count 50"))
        // Lag i seconds for gateway i: 0 and 1 s in the first bucket (le 1), 2-5 s in the next.
        #expect(text.contains("tributary_fleet_lag_seconds_bucket{le=\"1\"} 2") && text.contains("tributary_fleet_lag_seconds_bucket{le=\"5\"} 6"))
        #expect(text.contains("tributary_fleet_silence_seconds_bucket{le=\"300\"} 45") && text.contains("tributary_fleet_silence_seconds_bucket{le=\"900\"} 50"))
        #expect(text.contains("tributary_fleet_backlog_readings_bucket{le=\"0\"} 1"))
        #expect(text.contains("tributary_fleet_readings_dropped_total 50"))
    }

    @Test func theSettingIsReadAndCheckedWithItsKey() throws {
        #expect(try AggregatorConfig.parse(yaml: "", file: "a.yaml").metricsPerGateway == .top(1000))
        #expect(try AggregatorConfig.parse(yaml: "metrics:\n  per_gateway: all\n", file: "a.yaml").metricsPerGateway == .all)
        #expect(try AggregatorConfig.parse(yaml: "metrics:\n  per_gateway: top:50\n", file: "a.yaml").metricsPerGateway == .top(50))
        #expect {
            _ = try AggregatorConfig.parse(yaml: "metrics:\n  per_gateway: top:0\n", file: "a.yaml")
        } throws: { "\($0)".contains("metrics.per_gateway") && "\($0)".contains("a.yaml") }
    }
}
