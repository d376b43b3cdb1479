import TributaryCore

/// Which gateways a fleet view holds, in which order: `tributaryctl gateways`' options, and the
/// query of `GET /v1/fleet?sort=lag&stale=true&lagging_ms=60000&limit=50&offset=0`, so an
/// aggregator with ten thousand gateways answers with the page asked for, not all of them.
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
    /// At most this many, after `offset` of them; nil: all.
    public var limit: Int?
    public var offset = 0

    public init(order: Order = .id, onlyStale: Bool = false, laggingAtLeastMs: Int64? = nil, limit: Int? = nil, offset: Int = 0) {
        self.order = order
        self.onlyStale = onlyStale
        self.laggingAtLeastMs = laggingAtLeastMs
        self.limit = limit
        self.offset = offset
    }

    /// The largest page an aggregator serves; more is asked for page by page.
    public static let maxLimit = 100_000

    /// The gateways of `view` this query keeps, in its order, before paging.
    public func apply(_ view: FleetView) -> [GatewayView] {
        matching(view.gateways, nowMs: view.generatedAtMs)
    }

    public func matching(_ gateways: [GatewayView], nowMs now: Int64) -> [GatewayView] {
        let kept = gateways.filter { g in
            (!onlyStale || g.stale) && (laggingAtLeastMs.map { g.lagMs(nowMs: now) >= $0 } ?? true)
        }
        // Ties keep id order, so the output is stable between runs. The lag is computed once
        // a gateway, not once a comparison: ten thousand gateways take 140,000 comparisons.
        switch order {
        case .id:
            return kept.sorted { $0.gatewayID < $1.gatewayID }
        case .lag:
            return kept.map { ($0.lagMs(nowMs: now), $0) }
                .sorted { ($0.0, $1.1.gatewayID) > ($1.0, $0.1.gatewayID) }.map(\.1)
        case .backlog:
            return kept.sorted { ($0.backlogReadings, $1.gatewayID) > ($1.backlogReadings, $0.gatewayID) }
        case .lastSeen:
            return kept.sorted { ($0.lastSeenMs, $0.gatewayID) < ($1.lastSeenMs, $1.gatewayID) }
        }
    }

    /// One page of `matched`.
    public func page(_ matched: [GatewayView]) -> [GatewayView] {
        let start = min(offset, matched.count)
        let end = limit.map { min(matched.count, start + $0) } ?? matched.count
        return Array(matched[start..<end])
    }

    /// Whether the query asks for anything but the whole fleet in id order.
    public var isEverything: Bool { self == FleetQuery() }

    /// The URL query that asks an aggregator for this (empty for everything).
    public var urlQuery: String {
        var items: [String] = []
        if order != .id { items.append("sort=\(order.rawValue)") }
        if onlyStale { items.append("stale=true") }
        if let laggingAtLeastMs { items.append("lagging_ms=\(laggingAtLeastMs)") }
        if let limit { items.append("limit=\(limit)") }
        if offset > 0 { items.append("offset=\(offset)") }
        return items.isEmpty ? "" : "?" + items.joined(separator: "&")
    }

    /// A refused query parameter: the name and what it takes, for a 400.
    public struct Problem: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Reads a query from URL parameters (name -> value); an unknown name or a bad value is a
    /// problem naming it, never a silent default.
    public init(parameters: [(String, String)]) throws(Problem) {
        self.init()
        var seen: Set<String> = []
        for (name, value) in parameters {
            // Twice is ambiguous (`sort=lag&sort=id`): refused, not read as the last one.
            guard seen.insert(name).inserted else {
                throw Problem(description: "'\(Printable.clean(name, maxLength: 40))' is given more than once")
            }
            switch name {
            case "sort":
                guard let order = Order(rawValue: value) else {
                    throw Problem(description: "sort=\(value.prefix(40)): one of \(Order.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                self.order = order
            case "stale":
                guard let flag = ["true": true, "1": true, "false": false, "0": false][value] else {
                    throw Problem(description: "stale=\(value.prefix(40)): true or false")
                }
                onlyStale = flag
            case "lagging_ms":
                guard let ms = Int64(value), ms >= 0 else { throw Problem(description: "lagging_ms=\(value.prefix(40)): milliseconds, 0 or more") }
                laggingAtLeastMs = ms
            case "limit":
                guard let n = Int(value), (0...Self.maxLimit).contains(n) else {
                    throw Problem(description: "limit=\(value.prefix(40)): 0 to \(Self.maxLimit)")
                }
                limit = n
            case "offset":
                guard let n = Int(value), n >= 0 else { throw Problem(description: "offset=\(value.prefix(40)): 0 or more") }
                offset = n
            default:
                throw Problem(description: "unknown parameter '\(Printable.clean(name, maxLength: 40))': sort, stale, lagging_ms, limit, offset")
            }
        }
    }
}
