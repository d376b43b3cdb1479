import Synchronization
import TributaryAdminAPI
import TributaryCore
import TributaryRuntime
import TributaryWire

/// The aggregator's Prometheus metrics. Request outcomes and sink latency are counted as they
/// happen; everything else is read at scrape time from the fleet view, so `/metrics` and
/// `tributaryctl` can never disagree.
public final class AggregatorMetrics: Sendable {
    private struct Counts {
        var requests: [RequestOutcome: UInt64] = [:]
        var readingsAccepted: UInt64 = 0
    }

    private let counts = Mutex(Counts())
    /// Each batch's write to the sink (including the wait for a coalesced insert).
    public let sinkWriteSeconds = LatencyHistogram()

    public init() {}

    public func count(_ outcome: RequestOutcome, readings: Int = 0) {
        counts.withLock { c in
            c.requests[outcome, default: 0] += 1
            c.readingsAccepted += UInt64(readings)
        }
    }

    /// The exposition for `GET /metrics`.
    public func render(_ view: FleetView, sinkUp: Bool, auditUnwritten: UInt64 = 0, perGateway: PerGatewayMetrics = .all) -> String {
        let c = counts.withLock { $0 }
        var p = PrometheusText()
        p.family("tributary_requests_total", .counter, help: "Batch and heartbeat requests by outcome.")
        for outcome in RequestOutcome.aggregatorAnswers { p.sample("tributary_requests_total", ["outcome": outcome.rawValue], c.requests[outcome, default: 0]) }
        p.single("tributary_readings_accepted_total", .counter, help: "Readings written to the sink (each once; duplicates are not counted).",
                 Double(c.readingsAccepted))
        p.histogram("tributary_sink_write_seconds", help: "Time for the sink to commit a batch, including the wait for a coalesced write.",
                    sinkWriteSeconds.snapshot)
        let a = view.admission
        p.single("tributary_sink_up", .gauge, help: "1 when the sink's last write succeeded and it answers now.", sinkUp ? 1 : 0)
        p.single("tributary_sink_failures_total", .counter, help: "Sink writes that failed (answered 503).", Double(a.sinkFailures))
        p.single("tributary_sink_writes_total", .counter, help: "Commits to the sink; fewer than batches when coalesced.", Double(view.sinkWrites.writes))
        p.single("tributary_in_flight_batches", .gauge, help: "Batches admitted toward the sink and not yet answered.", Double(a.inFlightBatches))
        p.single("tributary_in_flight_bytes", .gauge, help: "Request bytes admitted toward the sink and not yet answered.", Double(a.inFlightBytes))
        p.single("tributary_max_in_flight_batches", .gauge, help: "Admission bound on batches in flight (limits.max_in_flight_batches).",
                 Double(a.maxInFlightBatches))
        p.single("tributary_connections_open", .gauge, help: "HTTP connections open now.", Double(a.openConnections))
        p.single("tributary_refused_senders", .gauge,
                 help: "Gateway ids whose requests were refused for their credentials (401/403) within stale_after_seconds (alert on any).",
                 Double(view.refusedSenders?.count ?? 0))
        p.single("tributary_audit_unwritten_total", .counter,
                 help: "Audit events not written because the audit directory reached audit.max_bytes (alert on any).", Double(auditUnwritten))
        p.single("tributary_connections_refused_total", .counter,
                 help: "Connections closed at once: past limits.max_connections or limits.max_connections_per_address.", Double(a.connectionsRefused))
        p.single("tributary_address_busy_refusals_total", .counter,
                 help: "Requests answered 429 because their address had its share (limits.max_in_flight_per_address or _bytes_per_address) in flight while the aggregator was busy.", Double(a.addressBusyRefusals))
        p.single("tributary_new_gateways_refused_total", .counter,
                 help: "Requests from gateways the registry did not know, answered 503 because it holds limits.max_gateways.", Double(a.newGatewaysRefused))
        p.family("tributary_requests_cut_off_total", .counter, help: "Requests whose head or body arrived too slowly; their connection was closed.")
        p.sample("tributary_requests_cut_off_total", ["part": "head"], UInt64(a.headTimeouts))
        p.sample("tributary_requests_cut_off_total", ["part": "body"], UInt64(a.bodyTimeouts))

        let now = view.generatedAtMs
        let totals = FleetTotals(view)
        p.family("tributary_gateways", .gauge, help: "Gateways in the fleet registry by state.")
        p.sample("tributary_gateways", ["state": "online"], totals.online)
        p.sample("tributary_gateways", ["state": "stale"], totals.stale)
        let perGatewaySeries: [(String, PrometheusText.Kind, String, (GatewayView) -> Double)] = [
            ("tributary_gateway_stale", .gauge, "1 when the gateway has been silent longer than stale_after_seconds.", { $0.stale ? 1 : 0 }),
            ("tributary_gateway_last_seen_timestamp_seconds", .gauge, "When the gateway was last heard from (Unix time).",
             { Double($0.lastSeenMs) / 1000 }),
            ("tributary_gateway_lag_seconds", .gauge, "Age of the oldest reading the gateway holds unacknowledged; 0 when caught up.",
             { Double($0.lagMs(nowMs: now)) / 1000 }),
            ("tributary_gateway_backlog_readings", .gauge, "Readings the gateway holds unacknowledged.", { Double($0.backlogReadings) }),
            ("tributary_gateway_buffer_bytes", .gauge, "Pages in use in the gateway's buffer file (what waits to be sent, the quarantine, and what the file keeps): not the backlog alone.", { Double($0.backlogBytes) }),
            ("tributary_gateway_ingest_rate", .gauge, "Readings per second the gateway buffers (its last minute).", { $0.ingestRate }),
            ("tributary_gateway_clock_skew_seconds", .gauge, "The gateway's clock minus the aggregator's (NTP-style estimate).",
             { Double($0.clockSkewMs) / 1000 }),
            ("tributary_gateway_readings_synced_total", .counter, "Readings from the gateway written to the sink.", { Double($0.readingsSynced) }),
            ("tributary_readings_dropped_total", .counter, "Readings the gateway gave up under its drop_oldest quota policy.",
             { Double($0.droppedTotal) }),
            ("tributary_payloads_quarantined_total", .counter, "MQTT payloads the gateway could not decode and quarantined.",
             { Double($0.quarantinedTotal) }),
            ("tributary_batches_set_aside_total", .counter, "Batches refused for good and kept on the gateway's disk.",
             { Double($0.setAsideBatches) }),
        ]
        fleetDistributions(view, into: &p)
        let shown = Self.gatewaysWithSeries(view, perGateway)
        p.family("tributary_gateway_series", .gauge, help: "Gateways with their own series here (metrics.per_gateway), and all gateways.")
        p.sample("tributary_gateway_series", ["gateways": "shown"], shown.count)
        p.sample("tributary_gateway_series", ["gateways": "all"], view.gateways.count)
        for (name, kind, help, value) in perGatewaySeries {
            p.family(name, kind, help: help)
            for g in shown { p.sample(name, ["gateway": g.gatewayID], value(g)) }
        }
        return p.text
    }

    /// The gateways `perGateway` gives series, most in trouble first for `top`: stale, then
    /// the most behind, then the largest backlog (ties by id, so the set is stable).
    static func gatewaysWithSeries(_ view: FleetView, _ perGateway: PerGatewayMetrics) -> [GatewayView] {
        switch perGateway {
        case .none: return []
        case .all: return view.gateways
        case .top(let n) where view.gateways.count <= n: return view.gateways
        case .top(let n):
            let now = view.generatedAtMs
            let ranked = view.gateways.map { ($0, $0.lagMs(nowMs: now)) }.sorted { a, b in
                if a.0.stale != b.0.stale { return a.0.stale }
                if a.1 != b.1 { return a.1 > b.1 }
                if a.0.backlogReadings != b.0.backlogReadings { return a.0.backlogReadings > b.0.backlogReadings }
                return a.0.gatewayID < b.0.gatewayID
            }
            return ranked.prefix(n).map(\.0)
        }
    }

    /// The whole fleet in a few series, whatever `metrics.per_gateway` says: how lag, backlog
    /// and silence are spread over the gateways, and the fleet's loss totals.
    private func fleetDistributions(_ view: FleetView, into p: inout PrometheusText) {
        let now = view.generatedAtMs
        let gateways = view.gateways.filter { $0.relay == nil }
        p.histogram("tributary_fleet_lag_seconds", help: "Gateways by lag: the age of the oldest reading each holds unacknowledged.",
                    Self.distribution(gateways.map { Double($0.lagMs(nowMs: now)) / 1000 }, bounds: [1, 5, 30, 60, 300, 600, 1800, 3600, 21_600, 86_400]))
        p.histogram("tributary_fleet_backlog_readings", help: "Gateways by backlog: readings each holds unacknowledged.",
                    Self.distribution(gateways.map { Double($0.backlogReadings) }, bounds: [0, 100, 1000, 10_000, 100_000, 1_000_000]))
        p.histogram("tributary_fleet_silence_seconds", help: "Gateways by the time since each was last heard from.",
                    Self.distribution(gateways.map { Double(now.saturatingMinus($0.lastSeenMs)) / 1000 }, bounds: [10, 30, 60, 120, 300, 900, 3600, 86_400]))
        let totals: [(String, String, (GatewayView) -> UInt64)] = [
            ("tributary_fleet_readings_dropped_total", "Readings the fleet's gateways gave up under their drop_oldest quota policy.", { $0.droppedTotal }),
            ("tributary_fleet_payloads_quarantined_total", "MQTT payloads the fleet's gateways could not decode and quarantined.", { $0.quarantinedTotal }),
            ("tributary_fleet_batches_set_aside_total", "Batches refused for good and kept on the fleet's gateways' disks.", { $0.setAsideBatches }),
        ]
        for (name, help, value) in totals {
            p.single(name, .counter, help: help, Double(gateways.reduce(UInt64(0)) { $0.addingClamped(value($1)) }))
        }
    }

    /// Values counted into buckets with these upper bounds (and one past them).
    static func distribution(_ values: [Double], bounds: [Double]) -> LatencyHistogram.Snapshot {
        var counts = [UInt64](repeating: 0, count: bounds.count + 1)
        for value in values { counts[bounds.firstIndex { value <= $0 } ?? bounds.count] += 1 }
        return LatencyHistogram.Snapshot(upperBoundsSeconds: bounds, counts: counts, sumSeconds: values.reduce(0, +))
    }
}
