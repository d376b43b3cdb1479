import TributaryCore

/// The fleet-wide figures every summary shows (tributaryctl status, watch, check, /metrics),
/// computed in one place from a fleet view so they cannot disagree. An aggregator computes them
/// over its whole fleet and sends them as the view's `summary` (`GET /v1/fleet/summary`), so a
/// summary of ten thousand gateways does not need ten thousand gateways sent.
public struct FleetTotals: Codable, Sendable, Equatable {
    public var gateways = 0
    public var stale = 0
    public var online: Int { gateways - stale }
    public var backlogReadings: UInt64 = 0
    public var readingsSynced: UInt64 = 0
    public var quarantined: UInt64 = 0
    public var dropped: UInt64 = 0
    public var setAsideBatches: UInt64 = 0
    /// Readings per second buffered by the gateways that are not stale.
    public var ingestRate = 0.0
    /// Gateways that are online and at their buffer quota or disk limit.
    public var fullBuffers = 0
    public var withErrors = 0
    /// The gateway furthest behind, and by how much; nil for an empty fleet.
    public var worst: (gatewayID: String, lagMs: Int64)? {
        worstGatewayID.map { ($0, worstLagMs ?? 0) }
    }
    public var worstGatewayID: String?
    public var worstLagMs: Int64?

    /// Relays reporting themselves (not counted as gateways), the batches in their spools, and
    /// how many have their upstream down.
    public var relays = 0
    public var relaySpoolBatches: UInt64 = 0
    public var relaysUpstreamDown = 0
    /// Gateways whose provenance chain shows batches that never arrived or arrived altered, and one of them.
    public var brokenChains = 0
    public var firstBrokenChain: String?

    public init(_ view: FleetView) {
        if let summary = view.summary {
            self = summary
            return
        }
        self.init(gateways: view.gateways, nowMs: view.generatedAtMs)
    }

    public init(gateways all: [GatewayView], nowMs: Int64) {
        let g = all.filter { $0.relay == nil }
        let relayViews = all.compactMap(\.relay)
        relays = relayViews.count
        relaySpoolBatches = relayViews.reduce(UInt64(0)) { $0 &+ $1.spoolBatches }
        relaysUpstreamDown = relayViews.filter { !$0.upstreamUp }.count
        gateways = g.count
        stale = g.filter(\.stale).count
        backlogReadings = g.saturatingSum(\.backlogReadings)
        readingsSynced = g.saturatingSum(\.readingsSynced)
        quarantined = g.saturatingSum(\.quarantinedTotal)
        dropped = g.saturatingSum(\.droppedTotal)
        setAsideBatches = g.saturatingSum(\.setAsideBatches)
        ingestRate = g.filter { !$0.stale }.reduce(0.0) { $0 + $1.ingestRate }
        fullBuffers = g.filter { $0.bufferFull && !$0.stale }.count
        withErrors = g.filter { !$0.lastError.isEmpty }.count
        if let worst = g.map({ ($0.gatewayID, $0.lagMs(nowMs: nowMs)) }).max(by: { $0.1 < $1.1 }) {
            worstGatewayID = worst.0
            worstLagMs = worst.1
        }
        let broken = all.filter { $0.chain?.broken == true }
        brokenChains = broken.count
        firstBrokenChain = broken.first?.gatewayID
    }

    public static func == (a: FleetTotals, b: FleetTotals) -> Bool {
        // Doubles compared as bits: a NaN rate is the same figure twice.
        a.gateways == b.gateways && a.stale == b.stale && a.backlogReadings == b.backlogReadings && a.readingsSynced == b.readingsSynced
            && a.quarantined == b.quarantined && a.dropped == b.dropped && a.setAsideBatches == b.setAsideBatches
            && a.ingestRate.bitPattern == b.ingestRate.bitPattern && a.fullBuffers == b.fullBuffers && a.withErrors == b.withErrors
            && a.worstGatewayID == b.worstGatewayID && a.worstLagMs == b.worstLagMs && a.relays == b.relays
            && a.relaySpoolBatches == b.relaySpoolBatches && a.relaysUpstreamDown == b.relaysUpstreamDown
            && a.brokenChains == b.brokenChains && a.firstBrokenChain == b.firstBrokenChain
    }

    enum CodingKeys: String, CodingKey {
        case gateways, stale, relays, quarantined, dropped
        case backlogReadings = "backlog_readings"
        case readingsSynced = "readings_synced"
        case setAsideBatches = "set_aside_batches"
        case ingestRate = "ingest_rate"
        case fullBuffers = "full_buffers"
        case withErrors = "with_errors"
        case worstGatewayID = "worst_gateway_id"
        case worstLagMs = "worst_lag_ms"
        case relaySpoolBatches = "relay_spool_batches"
        case relaysUpstreamDown = "relays_upstream_down"
        case brokenChains = "broken_chains"
        case firstBrokenChain = "first_broken_chain"
    }
}
