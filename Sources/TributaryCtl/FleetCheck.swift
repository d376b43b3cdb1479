import TributaryAdminAPI
import TributaryCore

/// `tributaryctl check`: the fleet against thresholds, as an exit code for alerting scripts
/// (the Nagios convention: 0 OK, 2 CRITICAL, 3 UNKNOWN).
public struct FleetCheck: Sendable {
    public enum Code: Int32, Sendable {
        case ok = 0
        case critical = 2
        case unknown = 3
    }

    /// A gateway further behind than this is a problem; nil: lag is not checked.
    public var maxLagMs: Int64?
    /// More stale gateways than this is a problem (0 by default: a bare `check` fails on any
    /// stale gateway, the commonest sign of trouble); nil: staleness is not checked.
    public var maxStale: Int?
    /// A failing sink is a problem (on by default).
    public var sinkMustBeHealthy = true
    /// A gateway refused for its credentials is a problem (on by default): it delivers nothing.
    public var refusedCredentialsAreCritical = true

    public init(maxLagMs: Int64? = nil, maxStale: Int? = 0, sinkMustBeHealthy: Bool = true) {
        self.maxLagMs = maxLagMs
        self.maxStale = maxStale
        self.sinkMustBeHealthy = sinkMustBeHealthy
    }

    /// The code and one line per finding; the first line summarises.
    public func evaluate(_ view: FleetView) -> (code: Code, lines: [String]) {
        let now = view.generatedAtMs
        var problems: [String] = []
        // Several aggregators asked: one that did not answer is down, or its part of the fleet unseen.
        for (url, reason) in (view.unanswered ?? [:]).sorted(by: { $0.key < $1.key }) {
            problems.append("aggregator \(url) did not answer: \(reason.prefix(120))")
        }
        if let maxLagMs {
            let lagging = FleetQuery(order: .lag, laggingAtLeastMs: maxLagMs + 1).apply(view)
            for g in lagging {
                // A relay's lag is the age of the oldest batch its spool has not forwarded.
                let what = g.relay == nil ? "gateway \(g.gatewayID) is" : "relay \(g.gatewayID) holds a batch"
                problems.append("\(what) \(HumanUnits.duration(ms: g.lagMs(nowMs: now))) behind (max \(HumanUnits.duration(ms: maxLagMs)))")
            }
        }
        for r in view.gateways where (r.relay?.setAsideBatches ?? 0) > 0 {
            problems.append("relay \(r.gatewayID) set aside \(r.relay!.setAsideBatches) batch(es) its upstream refused: \(r.relay!.lastError.prefix(120))")
        }
        if let maxStale {
            let stale = view.gateways.filter(\.stale)
            if stale.count > maxStale {
                let names = stale.prefix(10).map(\.gatewayID).joined(separator: ", ") + (stale.count > 10 ? ", ..." : "")
                problems.append("\(stale.count) gateways stale (max \(maxStale)): \(names)")
            }
        }
        if refusedCredentialsAreCritical {
            for r in (view.refusedSenders ?? []).prefix(10) {
                problems.append("gateway '\(r.shownGateway)' (as it claims) refused for its credentials \(r.refusals) time(s), last from \(r.lastPeer): \(r.lastReason.prefix(120))")
            }
        }
        if let registry = view.registryWriteError {
            problems.append("the fleet registry cannot be written (\(registry.prefix(120))): gateways' counts and chains are in memory only, and a crash of the aggregator now loses them")
        }
        if sinkMustBeHealthy, view.admission.consecutiveSinkFailures > 0 {
            problems.append("sink \(view.sink) failing: \(view.admission.consecutiveSinkFailures) writes in a row, last: \(view.admission.lastSinkError.prefix(120))")
        }
        if problems.isEmpty {
            let t = FleetTotals(view)
            return (.ok, ["OK: \(t.gateways) gateways, \(t.stale) stale, worst lag \(HumanUnits.duration(ms: t.worst?.lagMs ?? 0))"])
        }
        return (.critical, ["CRITICAL: \(problems.count) problem(s)"] + problems)
    }
}
