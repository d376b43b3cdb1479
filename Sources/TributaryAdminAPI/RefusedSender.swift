/// Requests the aggregator refused for their credentials (401 or 403), by the gateway they
/// said they came from (not proven: they were refused). A gateway whose token or certificate is
/// wrong shows here, with why, instead of only as stale.
public struct RefusedSender: Codable, Sendable, Equatable {
    /// What the request claimed (its status, or the agent's gateway header); empty when it said nothing.
    public var claimedGateway: String
    public var refusals: UInt64
    public var lastReason: String
    /// The address the last refused request came from.
    public var lastPeer: String
    public var firstAtMs: Int64
    public var lastAtMs: Int64

    public init(claimedGateway: String, refusals: UInt64, lastReason: String, lastPeer: String, firstAtMs: Int64, lastAtMs: Int64) {
        self.claimedGateway = claimedGateway
        self.refusals = refusals
        self.lastReason = lastReason
        self.lastPeer = lastPeer
        self.firstAtMs = firstAtMs
        self.lastAtMs = lastAtMs
    }

    /// The claimed id as tools show it.
    public var shownGateway: String { claimedGateway.isEmpty ? "(no id given)" : claimedGateway }

    enum CodingKeys: String, CodingKey {
        case claimedGateway = "claimed_gateway"
        case refusals
        case lastReason = "last_reason"
        case lastPeer = "last_peer"
        case firstAtMs = "first_at_ms"
        case lastAtMs = "last_at_ms"
    }
}
