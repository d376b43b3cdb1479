import TributaryAdminAPI
import TributaryCore

/// Where accepted readings go. A sink keeps the dedup ledger with the data, so it alone can
/// say whether a batch identity was written before: aggregators stay stateless.
public protocol Sink: Sendable, CustomStringConvertible {
    /// For logs and the fleet view, e.g. `sqlite:/var/lib/tributary/sink.sqlite`.
    var description: String { get }
    /// Checks the sink can be written and creates its tables when missing. A sink that is
    /// unreachable throws `.unavailable` (the aggregator starts anyway and answers 503 until it
    /// is back); one that refuses the configuration throws `.misconfigured`.
    func prepare() async throws(SinkError)
    /// Writes the batch's readings and its ledger entry atomically, unless the ledger already
    /// has the identity. Returns only after the write is committed.
    func write(_ batch: IncomingBatch) async throws(SinkError) -> SinkWriteResult
    /// Nil when the sink answers now, else why not: for `/readyz`.
    func readinessProblem() async -> String?
    /// What the sink wrote since it was opened.
    var writeStats: SinkWriteStats { get }
    func close() async
}

/// A validated batch, ready for a sink.
public struct IncomingBatch: Sendable {
    public let identity: BatchIdentity
    public let readings: [Reading]
    /// A digest of the batch's encoded contents: the same identity with other contents is a
    /// conflict, never a duplicate.
    public let digest: UInt64
    public let receivedAtMs: Int64

    public init(identity: BatchIdentity, readings: [Reading], digest: UInt64, receivedAtMs: Int64) {
        self.identity = identity
        self.readings = readings
        self.digest = digest
        self.receivedAtMs = receivedAtMs
    }
}

public enum SinkWriteResult: Sendable, Equatable {
    case accepted
    /// The ledger has this identity with the same contents: written before, not again.
    case duplicate
    /// The ledger has this identity with different contents: refused.
    case conflict
}

public struct SinkError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// Try again later (down, busy, full disk): answered 503.
        case unavailable
        /// The sink refuses the aggregator's configuration (credentials, database, permissions):
        /// answered 503 as well, since the data is fine, but fatal at start.
        case misconfigured
        /// The sink will never take this batch, however often it is sent (the message says why):
        /// for the aggregator to answer with a 4xx that sets the batch aside on the gateway, with
        /// that reason, instead of a 503 that brings it back forever.
        case refused
    }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// A reading as a tool reads it back from a sink: the columns both sinks keep, as stored.
public struct StoredReading: Sendable {
    public var gatewayID: String
    public var sensorID: String
    public var metric: String
    public var timeMs: Int64
    /// `number`, `integer`, `boolean` or `text`.
    public var valueType: String?
    public var value: Double?
    public var valueInt: Int64?
    public var valueText: String?

    /// The columns, in this order, that both sinks' `readings` have.
    static let columns = "gateway_id, sensor_id, metric, time_ms, value_type, value, value_int, value_text"
}
