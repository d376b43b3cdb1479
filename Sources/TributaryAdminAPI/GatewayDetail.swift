import TributaryCore

/// One gateway with its recent sync history, as `GET /v1/gateways/{id}` returns it.
public struct GatewayDetail: Codable, Sendable, Equatable {
    public var generatedAtMs: Int64
    public var staleAfterSeconds: Int
    public var gateway: GatewayView
    /// Newest first, at most `FleetHistory.eventsPerGateway`.
    public var history: [SyncEvent]

    public init(generatedAtMs: Int64, staleAfterSeconds: Int, gateway: GatewayView, history: [SyncEvent]) {
        self.generatedAtMs = generatedAtMs
        self.staleAfterSeconds = staleAfterSeconds
        self.gateway = gateway
        self.history = history
    }

    enum CodingKeys: String, CodingKey {
        case generatedAtMs = "generated_at_ms"
        case staleAfterSeconds = "stale_after_seconds"
        case gateway, history
    }
}

/// What became of one request from a gateway.
public struct SyncEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// The batch was written to the sink.
        case accepted
        /// A resend of a batch the sink already held: not written again.
        case duplicate
        /// A status-only request.
        case heartbeat
        /// The sink could not take the batch (503); the gateway keeps it and retries.
        case refused
        /// The batch was refused for good (4xx); the gateway sets it aside.
        case rejected
    }

    public var atMs: Int64
    public var kind: Kind
    /// `gateway/epoch/sequence`, empty for a heartbeat.
    public var batch: String
    public var readings: Int
    /// Why, for `refused` and `rejected`.
    public var detail: String

    public init(atMs: Int64, kind: Kind, batch: String = "", readings: Int = 0, detail: String = "") {
        self.atMs = atMs
        self.kind = kind
        self.batch = batch
        self.readings = readings
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case atMs = "at_ms"
        case kind, batch, readings, detail
    }
}
