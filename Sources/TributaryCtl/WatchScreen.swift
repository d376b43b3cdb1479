import TributaryAdminAPI
import TributaryCore

/// The fleet figures `watch` keeps between refreshes, for its sparklines.
public struct WatchHistory: Sendable, Equatable {
    public private(set) var ingestRates: [Double] = []
    public private(set) var backlogs: [Double] = []
    public let capacity: Int

    public init(capacity: Int = 120) { self.capacity = capacity }

    public mutating func add(_ view: FleetView) {
        let totals = FleetTotals(view)
        ingestRates.append(totals.ingestRate)
        backlogs.append(Double(totals.backlogReadings))
        if ingestRates.count > capacity { ingestRates.removeFirst(ingestRates.count - capacity) }
        if backlogs.count > capacity { backlogs.removeFirst(backlogs.count - capacity) }
    }
}

/// Eight levels of block characters, scaled from zero to the largest value shown.
public enum Sparkline {
    static let levels: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// The last `width` values; empty positions on the left are blank.
    public static func render(_ values: [Double], width: Int) -> String {
        let shown = values.suffix(max(0, width))
        let top = shown.max() ?? 0
        let bars = shown.map { v -> Character in
            guard top > 0, v > 0 else { return levels[0] }
            return levels[min(levels.count - 1, Int((v / top) * Double(levels.count - 1)))]
        }
        return String(repeating: " ", count: max(0, width - bars.count)) + String(bars)
    }
}

/// The full-screen view of `tributaryctl watch`, as lines that fit `width` x `height`. Pure, so
/// tests render it from fixed data.
public enum WatchScreen {
    public static func render(_ view: FleetView, history: WatchHistory, aggregator: String, clock: String,
                              intervalSeconds: Double, width: Int, height: Int, problem: String? = nil) -> [String] {
        let now = view.generatedAtMs
        let t = FleetTotals(view)
        let ingest = history.ingestRates.last ?? 0
        let a = view.admission
        let sink = a.consecutiveSinkFailures == 0 ? "healthy" : "FAILING (\(a.consecutiveSinkFailures) in a row)"
        let spark = max(10, min(60, width - 28))
        var lines = [
            "tributary fleet  \(aggregator)  \(clock)  every \(HumanUnits.duration(ms: Int64(intervalSeconds * 1000)))  q: quit",
            "gateways \(t.gateways) (\(t.online) online, \(t.stale) stale)   sink \(view.sink): \(sink)",
            "worst lag " + (t.worst.map { "\(HumanUnits.duration(ms: $0.lagMs)) (\($0.gatewayID))" } ?? "-")
                + "   dropped \(HumanUnits.count(t.dropped))"
                + "   quarantined \(HumanUnits.count(t.quarantined))",
            "ingest  " + pad(HumanUnits.rate(ingest), 10) + "  " + Sparkline.render(history.ingestRates, width: spark),
            "backlog " + pad(HumanUnits.count(t.backlogReadings), 10) + "  " + Sparkline.render(history.backlogs, width: spark),
            "",
        ]
        if let problem { lines.insert("! " + problem, at: 1) }
        // The most-behind gateways first: what an operator watches for.
        let rows = FleetQuery(order: .lag).apply(view)
        let room = max(0, height - lines.count - 1)
        let shown = rows.count > room ? Array(rows.prefix(max(0, room - 1))) : rows
        var table = FleetRendering.table(
            header: ["GATEWAY", "STATE", "LAST SEEN", "LAG", "BACKLOG", "INGEST", "SEND", "LAST ERROR"],
            rows: shown.map { g in
                [g.gatewayID, FleetRendering.state(g), FleetRendering.lastSeen(g, nowMs: now),
                 g.oldestUnsentMs > 0 ? HumanUnits.duration(ms: g.lagMs(nowMs: now)) : "-",
                 HumanUnits.count(g.backlogReadings), HumanUnits.rate(g.ingestRate), HumanUnits.rate(g.sendRate),
                 g.lastError.isEmpty ? "-" : g.lastError]
            }).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        // A paged view holds the first rows only: `matched` says how many there are.
        let total = max(rows.count, view.matched ?? rows.count)
        if total > shown.count { table.append("... \(total - shown.count) more (tributaryctl gateways --sort lag)") }
        lines += table
        return lines.prefix(height).map { clip(Printable.lines($0), width) }
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static func clip(_ line: String, _ width: Int) -> String {
        line.count <= width ? line : String(line.prefix(max(0, width - 1))) + "…"
    }
}
