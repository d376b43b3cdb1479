import TributaryCore

/// The fleet-wide figures every summary shows (tributaryctl status, watch, check, /metrics),
/// computed in one place from a fleet view so they cannot disagree.
public struct FleetTotals: Sendable {
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
    public var worst: (gatewayID: String, lagMs: Int64)?

    /// Relays reporting themselves (not counted as gateways).
    public var relays = 0

    public init(_ view: FleetView) {
        let g = view.gateways.filter { $0.relay == nil }
        relays = view.gateways.count - g.count
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
        worst = g.map { ($0.gatewayID, $0.lagMs(nowMs: view.generatedAtMs)) }.max { $0.1 < $1.1 }
    }
}
