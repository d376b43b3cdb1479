import TributaryAdminAPI
import TributaryCore

/// How `tributaryctl gateways` orders and filters its rows.
public struct FleetQuery: Sendable, Equatable {
    public enum Order: String, Sendable, CaseIterable {
        /// By gateway id.
        case id
        /// Most behind first.
        case lag
        /// Largest backlog first.
        case backlog
        /// Longest silent first.
        case lastSeen = "last-seen"
    }

    public var order: Order = .id
    /// Only gateways shown stale.
    public var onlyStale = false
    /// Only gateways at least this far behind.
    public var laggingAtLeastMs: Int64?

    public init(order: Order = .id, onlyStale: Bool = false, laggingAtLeastMs: Int64? = nil) {
        self.order = order
        self.onlyStale = onlyStale
        self.laggingAtLeastMs = laggingAtLeastMs
    }

    public func apply(_ view: FleetView) -> [GatewayView] {
        let now = view.generatedAtMs
        let kept = view.gateways.filter { g in
            (!onlyStale || g.stale) && (laggingAtLeastMs.map { g.lagMs(nowMs: now) >= $0 } ?? true)
        }
        // Ties keep id order, so the output is stable between runs.
        return kept.sorted { a, b in
            switch order {
            case .id: return a.gatewayID < b.gatewayID
            case .lag: return (a.lagMs(nowMs: now), b.gatewayID) > (b.lagMs(nowMs: now), a.gatewayID)
            case .backlog: return (a.backlogReadings, b.gatewayID) > (b.backlogReadings, a.gatewayID)
            case .lastSeen: return (a.lastSeenMs, a.gatewayID) < (b.lastSeenMs, b.gatewayID)
            }
        }
    }
}
