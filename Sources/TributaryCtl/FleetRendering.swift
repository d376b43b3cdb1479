import TributaryAdminAPI
import TributaryCore

/// Text renderings of the fleet view for `tributaryctl`.
public enum FleetRendering {
    /// The fleet summary: how many gateways, how many stale, backlog, worst lag, losses.
    public static func status(_ view: FleetView, aggregator: String) -> String {
        let t = FleetTotals(view)
        let a = view.admission
        let sinkHealth = a.consecutiveSinkFailures == 0
            ? "healthy"
            : "FAILING, \(a.consecutiveSinkFailures) writes in a row: \(a.lastSinkError.prefix(80))"
        var lines = [
            "aggregator   \(aggregator)",
            "sink         \(one(view.sink)) (\(one(sinkHealth)))",
            "sink writes  \(HumanUnits.count(UInt64(view.sinkWrites.batches))) batches in \(HumanUnits.count(UInt64(view.sinkWrites.writes))) writes since start (up to \(view.sinkWrites.largestWriteBatches) batches coalesced in one)",
            "in flight    \(a.inFlightBatches)/\(a.maxInFlightBatches) batches, \(HumanUnits.bytes(a.inFlightBytes))/\(HumanUnits.bytes(a.maxInFlightBytes)) toward the sink; \(a.busyRefusals + a.addressBusyRefusals) refused busy (429) since start",
            "gateways     \(t.gateways) total, \(t.online) online, \(t.stale) stale (silent > \(HumanUnits.duration(ms: Int64(view.staleAfterSeconds) * 1000)))",
            "backlog      \(HumanUnits.count(t.backlogReadings)) readings",
            "worst lag    " + (t.worst.map { "\(HumanUnits.duration(ms: $0.lagMs)) (\(one($0.gatewayID)))" } ?? "-"),
            "ingest       \(HumanUnits.rate(t.ingestRate))",
            "synced       \(HumanUnits.count(t.readingsSynced)) readings",
            "quarantined  \(HumanUnits.count(t.quarantined)) payloads",
            "dropped      \(HumanUnits.count(t.dropped)) readings",
            "set aside    \(HumanUnits.count(t.setAsideBatches)) batches refused for good, kept on their gateways",
        ]
        if t.relays > 0 {
            lines.insert("relays       \(t.relays) report here, \(HumanUnits.count(t.relaySpoolBatches)) batches in their spools, \(t.relaysUpstreamDown) with their upstream down (tributaryctl relays)", at: 5)
        }
        for (url, reason) in (view.unanswered ?? [:]).sorted(by: { $0.key < $1.key }) {
            lines.insert("NO ANSWER    \(one(url)): \(one(String(reason.prefix(120)))); its part of the fleet is missing here", at: 1)
        }
        if let registry = view.registryWriteError {
            lines.append("REGISTRY     cannot be written: \(one(String(registry.prefix(120)))); counts and chains are in the aggregator's memory only until it can")
        }
        if a.newGatewaysRefused > 0 {
            lines.append("refused      \(HumanUnits.count(UInt64(a.newGatewaysRefused))) requests from gateways not shown here: the registry holds limits.max_gateways; they keep their readings until it is raised")
        }
        if let refused = view.refusedSenders, !refused.isEmpty {
            let first = refused[0]
            lines.append("credentials  \(refused.count) gateway(s) refused for their credentials (401/403), e.g. \(one(first.shownGateway)) from \(first.lastPeer): \(first.lastReason.prefix(80)); see `tributaryctl gateways`")
        }
        if t.fullBuffers > 0 { lines.append("buffer full  \(t.fullBuffers) gateway(s) at their buffer quota or disk limit: not reading from their brokers") }
        if t.withErrors > 0 { lines.append("errors       \(t.withErrors) gateway(s) report a last error; see `tributaryctl gateways`") }
        if t.brokenChains > 0 {
            lines.append("provenance   \(t.brokenChains) gateway(s) with batches that never arrived or arrived altered, e.g. \(one(t.firstBrokenChain ?? "?")); see `tributaryctl gateway ID`")
        }
        return Printable.lines(lines.joined(separator: "\n") + "\n")
    }

    /// Senders refused for their credentials, by the gateway they claim (not proven), or ""
    /// when there are none.
    public static func refusedSendersTable(_ view: FleetView) -> String {
        guard let refused = view.refusedSenders, !refused.isEmpty else { return "" }
        let rows = refused.map { r -> [String] in
            [r.shownGateway, HumanUnits.count(r.refusals),
             HumanUnits.duration(ms: max(0, view.generatedAtMs - r.lastAtMs)) + " ago", r.lastPeer, String(r.lastReason.prefix(80))]
        }
        return Printable.lines("\nRefused for their credentials (401/403; the gateway ids are what the requests claimed, unauthenticated):\n"
            + table(header: ["CLAIMED GATEWAY", "REFUSALS", "LAST", "FROM", "REASON"], rows: rows))
    }

    /// One row per relay that reports to this aggregator: its spool, its upstream link and its
    /// own gateways. VIA is the relays above it on the way here, if any.
    public static func relaysTable(_ view: FleetView) -> String {
        let now = view.generatedAtMs
        let relays = view.gateways.filter { $0.relay != nil }
        guard !relays.isEmpty else { return "no relays report to this aggregator\n" }
        let header = ["RELAY", "VIA", "STATE", "LAST SEEN", "SPOOL", "SPOOL BYTES", "OLDEST", "UPSTREAM", "FORWARDED", "RATE", "GATEWAYS", "SET ASIDE", "LAST ERROR"]
        let rows = relays.map { g -> [String] in
            let r = g.relay!
            let above = (g.via ?? []).dropLast()
            return [
                g.gatewayID,
                above.isEmpty ? "-" : above.joined(separator: ">"),
                g.stale ? "stale" : "online",
                lastSeen(g, nowMs: now),
                HumanUnits.count(r.spoolBatches),
                HumanUnits.bytes(r.spoolBytes),
                r.oldestUnforwardedMs > 0 ? HumanUnits.duration(ms: g.lagMs(nowMs: now)) : "-",
                r.upstreamUp ? "up" : "down",
                HumanUnits.count(r.forwardedReadingsTotal),
                HumanUnits.rate(r.forwardRate),
                String(r.gateways),
                HumanUnits.count(r.setAsideBatches),
                r.lastError.isEmpty ? "-" : String(r.lastError.prefix(60)),
            ]
        }
        return Printable.lines(table(header: header, rows: rows))
    }

    /// One row per gateway, in the order given (all of them, by id, when nil).
    public static func gatewaysTable(_ view: FleetView, rows gateways: [GatewayView]? = nil) -> String {
        let now = view.generatedAtMs
        // Relays reporting themselves have their own table (`relaysTable`).
        let shown = (gateways ?? view.gateways).filter { $0.relay == nil }
        // Behind relays (a tiered fleet), the relay path each gateway's batches came by.
        let relayed = shown.contains { !($0.via ?? []).isEmpty }
        // With several aggregators: the one each gateway delivers to now, and its failovers.
        let several = Set(shown.compactMap(\.aggregator)).count > 1 || shown.contains { ($0.failovers ?? 0) > 0 }
        let header = ["GATEWAY"] + (relayed ? ["VIA"] : []) + (several ? ["AGGREGATOR", "FAILOVERS"] : [])
            + ["STATE", "LAST SEEN", "LAG", "BACKLOG", "INGEST", "SYNCED", "QUARANTINED", "DROPPED", "SET ASIDE", "SKEW", "LAST ERROR"]
        let rows = shown.map { g -> [String] in
            let path: [String] = relayed ? [(g.via ?? []).isEmpty ? "-" : g.via!.joined(separator: ">")] : []
            let aggregator: [String] = several ? [g.aggregator.map(shortURL) ?? "-", g.failovers.map { HumanUnits.count($0) } ?? "-"] : []
            let figures: [String] = [
                state(g),
                lastSeen(g, nowMs: now),
                g.oldestUnsentMs > 0 ? HumanUnits.duration(ms: g.lagMs(nowMs: now)) : "-",
                HumanUnits.count(g.backlogReadings),
                HumanUnits.rate(g.ingestRate),
                HumanUnits.count(g.readingsSynced),
                HumanUnits.count(g.quarantinedTotal),
                HumanUnits.count(g.droppedTotal),
                HumanUnits.count(g.setAsideBatches),
                HumanUnits.signedDuration(ms: g.clockSkewMs),
                g.lastError.isEmpty ? "-" : String(g.lastError.prefix(60)),
            ]
            return [g.gatewayID] + path + aggregator + figures
        }
        return Printable.lines(table(header: header, rows: rows))
    }

    /// `tributaryctl gateway ID`: everything the aggregator knows about one gateway.
    public static func gatewayDetail(_ detail: GatewayDetail) -> String {
        let g = detail.gateway, now = detail.generatedAtMs
        var lines = [
            "gateway      \(one(g.gatewayID)) (\(state(g)); agent \(g.agentVersion.isEmpty ? "?" : one(g.agentVersion)))",
            "last seen    \(lastSeen(g, nowMs: now)); stale after \(HumanUnits.duration(ms: Int64(detail.staleAfterSeconds) * 1000)) of silence",
            "last batch   " + (g.lastBatchMs > 0 ? HumanUnits.duration(ms: now.saturatingMinus(g.lastBatchMs)) + " ago" : "never"),
            "broker       " + (g.brokerConnected ? "connected" : "NOT connected"),
            "backlog      \(HumanUnits.count(g.backlogReadings)) readings (buffer file \(HumanUnits.bytes(g.backlogBytes)) in use)",
            "lag          " + (g.oldestUnsentMs > 0 ? HumanUnits.duration(ms: g.lagMs(nowMs: now)) + " (oldest unsent reading)" : "none, caught up"),
            "rates        ingest \(HumanUnits.rate(g.ingestRate)), send \(HumanUnits.rate(g.sendRate))",
            "synced       \(HumanUnits.count(g.readingsSynced)) readings in \(HumanUnits.count(g.batchesSynced)) batches; \(HumanUnits.count(g.duplicateBatches)) resends answered duplicate"
                + (g.acknowledgedTotal.map { "; the gateway counts \(HumanUnits.count($0)) acknowledged since its buffer was created" } ?? ""),
            "losses       \(HumanUnits.count(g.droppedTotal)) readings dropped, \(HumanUnits.count(g.quarantinedTotal)) payloads quarantined, \(HumanUnits.count(g.setAsideBatches)) batches set aside"
                + (g.withheldTotal > 0 ? "; \(HumanUnits.count(g.withheldTotal)) withheld by governance drop rules (on purpose)" : ""),
            "clock        " + (g.roundTripMs >= 0
                ? "gateway \(HumanUnits.signedDuration(ms: g.clockSkewMs)) vs the aggregator (±\(HumanUnits.duration(ms: (g.roundTripMs + 1) / 2)), round trip \(HumanUnits.duration(ms: g.roundTripMs)))"
                : "gateway \(HumanUnits.signedDuration(ms: g.clockSkewMs)) vs the aggregator (one-way estimate)"),
            "last error   " + (g.lastError.isEmpty ? "-" : "\(one(g.lastError)) (\(HumanUnits.duration(ms: now.saturatingMinus(g.aggregatorTime(g.lastErrorMs)))) ago)"),
            "chain        " + (g.chain.map { one(chain($0, nowMs: now)) } ?? "no batch yet"),
        ]
        if let aggregator = g.aggregator {
            lines.insert("aggregator   \(one(aggregator)) now; \(HumanUnits.count(g.failovers ?? 0)) failover(s) since its agent started", at: 3)
        }
        if let reasons = g.quarantineReasons, !reasons.isEmpty {
            lines.append("quarantined, by reason (the gateway's buffer holds them; most frequent first):")
            lines += reasons.map { "  \(HumanUnits.count($0.count))  \(one($0.kind)), e.g. \(one(String($0.example.prefix(120))))" }
        }
        lines += ["", "recent sync history (newest first):"]
        if detail.history.isEmpty { lines.append("  (none)") }
        let rows = detail.history.prefix(20).map { e -> [String] in
            [HumanUnits.duration(ms: now.saturatingMinus(e.atMs)) + " ago", e.kind.rawValue, e.batch.isEmpty ? "-" : e.batch,
             e.readings > 0 ? HumanUnits.count(e.readings) : "-", e.detail.isEmpty ? "" : String(e.detail.prefix(80))]
        }
        if !rows.isEmpty {
            lines.append(table(header: ["WHEN", "WHAT", "BATCH", "READINGS", "DETAIL"], rows: rows)
                .split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        return Printable.lines(lines.joined(separator: "\n") + "\n")
    }

    /// `http://agg-a.example:8470` as `agg-a.example:8470`: a column, not a link.
    static func shortURL(_ url: String) -> String {
        let rest = url.split(separator: "://", maxSplits: 1).last.map(String.init) ?? url
        return String(rest.prefix(40))
    }

    /// The hash chain of the gateway's latest epoch, in one line.
    static func chain(_ c: ChainView, nowMs: Int64) -> String {
        var parts = ["epoch \(c.epoch.prefix(12)): batches \(c.startSequence)-\(c.checkedThrough) checked"]
        if c.waiting > 0 {
            parts.append("\(c.waiting) missing after \(c.checkedThrough) for \(HumanUnits.duration(ms: nowMs.saturatingMinus(c.waitingSinceMs))) (in flight or retried; a gap after 10m)")
        }
        if c.gaps > 0 { parts.append("GAPS: \(c.gaps), \(HumanUnits.count(c.missingBatches)) batches never arrived") }
        if c.mismatches > 0 { parts.append("ALTERED: \(c.mismatches) links do not match") }
        if c.unchained > 0 { parts.append("\(HumanUnits.count(c.unchained)) batches unchained (sent without a previous digest)") }
        if c.intact && c.waiting == 0 { parts.append("intact") }
        if !c.lastProblem.isEmpty {
            parts.append("last problem: \(c.lastProblem) (\(HumanUnits.duration(ms: nowMs.saturatingMinus(c.lastProblemMs))) ago)")
        }
        return parts.joined(separator: "; ")
    }

    /// A value from a gateway, on one line of its own: what `Printable.clean` makes of it
    /// (the whole rendering is cleaned again, but that keeps line breaks).
    static func one(_ text: String) -> String { Printable.clean(text) }

    static func state(_ g: GatewayView) -> String {
        g.stale ? "stale" : g.bufferFull ? "full" : "online"
    }

    static func lastSeen(_ g: GatewayView, nowMs: Int64) -> String {
        g.lastSeenMs > 0 ? HumanUnits.duration(ms: nowMs.saturatingMinus(g.lastSeenMs)) + " ago" : "never"
    }

    /// Aligned columns. Each cell is one line: a newline, an escape sequence or a bidirectional
    /// override a gateway sent becomes `?` here, so it cannot start a fake row.
    static func table(header: [String], rows: [[String]]) -> String {
        Printable.table(header: header, rows: rows).joined(separator: "\n") + "\n"
    }
}
