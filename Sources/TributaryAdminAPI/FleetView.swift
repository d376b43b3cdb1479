import TributaryCore

/// The aggregator's view of its fleet, as `GET /v1/fleet` returns it (JSON, snake_case keys).
/// `tributaryctl` decodes the same types.
public struct FleetView: Codable, Sendable, Equatable {
    public var generatedAtMs: Int64
    /// A gateway silent for longer than this is stale.
    public var staleAfterSeconds: Int
    public var sink: String
    /// The aggregator's own backpressure toward the sink.
    public var admission: AdmissionStats
    /// What the sink wrote since the aggregator started.
    public var sinkWrites: SinkWriteStats
    public var gateways: [GatewayView]
    /// Senders refused for their credentials within the last `staleAfterSeconds`, most recent
    /// first (absent from an aggregator older than this field).
    public var refusedSenders: [RefusedSender]?
    /// Set by `tributaryctl` when it joined several aggregators' views (`FleetMerge`): the
    /// aggregators asked, and those that did not answer, with why (their part is missing).
    public var mergedFrom: [String]?
    public var unanswered: [String: String]?
    /// Set when the view was asked for with a query (`FleetQuery`, or `/v1/fleet/summary`):
    /// the whole fleet's totals, and how many gateways matched the query before paging.
    /// `gateways` then holds one page of them.
    public var summary: FleetTotals?
    public var matched: Int?
    /// Why the aggregator's fleet registry cannot be written now (a full disk), while it cannot:
    /// its gateways' counts and chain links are then in its memory only, and a crash loses
    /// them (delivery goes on: readings are in the sink). Nil when writes succeed.
    public var registryWriteError: String?

    public init(generatedAtMs: Int64, staleAfterSeconds: Int, sink: String, admission: AdmissionStats = .init(),
                sinkWrites: SinkWriteStats = .init(), gateways: [GatewayView], refusedSenders: [RefusedSender] = []) {
        self.generatedAtMs = generatedAtMs
        self.staleAfterSeconds = staleAfterSeconds
        self.sink = sink
        self.admission = admission
        self.sinkWrites = sinkWrites
        self.gateways = gateways
        self.refusedSenders = refusedSenders
    }

    enum CodingKeys: String, CodingKey {
        case refusedSenders = "refused_senders"
        case mergedFrom = "merged_from"
        case unanswered, summary, matched
        case registryWriteError = "registry_write_error"
        case generatedAtMs = "generated_at_ms"
        case staleAfterSeconds = "stale_after_seconds"
        case sink, admission, gateways
        case sinkWrites = "sink_writes"
    }
}

/// The sink's writes: how many commits, and how many batches they carried. More batches than
/// writes means batches waiting for a slow sink were coalesced into larger inserts.
public struct SinkWriteStats: Codable, Sendable, Equatable {
    /// Commits to the sink (transactions, inserts) that succeeded.
    public var writes = 0
    /// Batches written (accepted; duplicates are not written again).
    public var batches = 0
    public var readings = 0
    /// The most batches one write carried.
    public var largestWriteBatches = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case writes, batches, readings
        case largestWriteBatches = "largest_write_batches"
    }
}

/// What is in flight from the aggregator toward its sink, and what backpressure it applied
/// since it started.
public struct AdmissionStats: Codable, Sendable, Equatable {
    public var inFlightBatches = 0
    /// Request bytes (as sent, compressed) admitted and not yet answered.
    public var inFlightBytes = 0
    public var maxInFlightBatches = 0
    public var maxInFlightBytes = 0
    public var peakInFlightBatches = 0
    public var peakInFlightBytes = 0
    /// Requests answered 429 because the bounds were reached.
    public var busyRefusals = 0
    /// Sink writes that failed (answered 503).
    public var sinkFailures = 0
    /// Failed sink writes since the last good one: 0 means the sink is healthy.
    public var consecutiveSinkFailures = 0
    public var lastSinkError = ""
    /// Connections open now, and those closed at once past `limits.max_connections` or
    /// `limits.max_connections_per_address`.
    public var openConnections = 0
    public var connectionsRefused = 0
    /// Requests answered 429 because their address had `limits.max_in_flight_per_address` in flight.
    public var addressBusyRefusals = 0
    /// Requests cut off (connection closed) because their head or body arrived too slowly.
    public var headTimeouts = 0
    public var bodyTimeouts = 0
    /// Requests from gateways the registry did not know, answered 503 because it holds
    /// `limits.max_gateways`: those gateways keep their readings and are not in the fleet view.
    public var newGatewaysRefused = 0

    public init() {}

    /// An older aggregator's JSON lacks the connection figures: they read as 0.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inFlightBatches = try c.decode(Int.self, forKey: .inFlightBatches)
        inFlightBytes = try c.decode(Int.self, forKey: .inFlightBytes)
        maxInFlightBatches = try c.decode(Int.self, forKey: .maxInFlightBatches)
        maxInFlightBytes = try c.decode(Int.self, forKey: .maxInFlightBytes)
        peakInFlightBatches = try c.decode(Int.self, forKey: .peakInFlightBatches)
        peakInFlightBytes = try c.decode(Int.self, forKey: .peakInFlightBytes)
        busyRefusals = try c.decode(Int.self, forKey: .busyRefusals)
        sinkFailures = try c.decode(Int.self, forKey: .sinkFailures)
        consecutiveSinkFailures = try c.decode(Int.self, forKey: .consecutiveSinkFailures)
        lastSinkError = try c.decode(String.self, forKey: .lastSinkError)
        openConnections = try c.decodeIfPresent(Int.self, forKey: .openConnections) ?? 0
        connectionsRefused = try c.decodeIfPresent(Int.self, forKey: .connectionsRefused) ?? 0
        addressBusyRefusals = try c.decodeIfPresent(Int.self, forKey: .addressBusyRefusals) ?? 0
        headTimeouts = try c.decodeIfPresent(Int.self, forKey: .headTimeouts) ?? 0
        bodyTimeouts = try c.decodeIfPresent(Int.self, forKey: .bodyTimeouts) ?? 0
        newGatewaysRefused = try c.decodeIfPresent(Int.self, forKey: .newGatewaysRefused) ?? 0
    }

    enum CodingKeys: String, CodingKey {
        case inFlightBatches = "in_flight_batches"
        case inFlightBytes = "in_flight_bytes"
        case maxInFlightBatches = "max_in_flight_batches"
        case maxInFlightBytes = "max_in_flight_bytes"
        case peakInFlightBatches = "peak_in_flight_batches"
        case peakInFlightBytes = "peak_in_flight_bytes"
        case busyRefusals = "busy_refusals"
        case sinkFailures = "sink_failures"
        case consecutiveSinkFailures = "consecutive_sink_failures"
        case lastSinkError = "last_sink_error"
        case openConnections = "open_connections"
        case connectionsRefused = "connections_refused"
        case addressBusyRefusals = "address_busy_refusals"
        case headTimeouts = "head_timeouts"
        case bodyTimeouts = "body_timeouts"
        case newGatewaysRefused = "new_gateways_refused"
    }
}

/// One gateway as the aggregator last heard from it.
public struct GatewayView: Codable, Sendable, Equatable {
    public var gatewayID: String
    public var lastSeenMs: Int64
    public var stale: Bool
    public var agentVersion: String
    public var brokerConnected: Bool
    public var backlogReadings: UInt64
    public var backlogBytes: UInt64
    /// Receive time of the oldest reading the gateway still holds unacknowledged; 0 if none.
    public var oldestUnsentMs: Int64
    /// Readings the sink holds from this gateway (written once each).
    public var readingsSynced: UInt64
    public var batchesSynced: UInt64
    /// Resent batches answered "duplicate" (a lost ack, then a resend): not written again.
    public var duplicateBatches: UInt64
    public var quarantinedTotal: UInt64
    /// Readings given up under the `drop_oldest` quota policy.
    public var droppedTotal: UInt64
    /// Readings a governance `drop` rule kept from the gateway's buffer on purpose, since its agent started.
    public var withheldTotal: UInt64 = 0
    /// Batches the aggregator refused for good; kept on the gateway's disk.
    public var setAsideBatches: UInt64
    /// MQTT messages the gateway received again (QoS 1 redelivery) and did not store twice.
    public var redeliveriesTotal: UInt64
    /// The gateway's buffer is at its quota or the disk is full: it is not reading from its broker.
    public var bufferFull: Bool
    public var ingestRate: Double
    public var sendRate: Double
    public var lastError: String
    public var lastErrorMs: Int64
    /// The gateway's clock minus the aggregator's (positive: the gateway is ahead), estimated
    /// NTP-style from its last completed request; accurate to about half `roundTripMs`.
    public var clockSkewMs: Int64
    /// Network round trip of that request, without the aggregator's own time; -1 if no timed
    /// request is known yet (the skew is then the gateway's clock minus the receive time).
    public var roundTripMs: Int64
    /// When the aggregator last wrote a batch from this gateway; 0 if never.
    public var lastBatchMs: Int64
    /// The provenance chain of its latest epoch; nil before its first batch (and from an
    /// aggregator older than the chain).
    public var chain: ChainView?
    /// Why its buffer's quarantined payloads were kept, by kind, most frequent first (at most
    /// 5); nil from an agent or aggregator older than this field.
    public var quarantineReasons: [QuarantineReasonCount]?
    /// The relays its batches came through, nearest the gateway first; nil when it reports
    /// here directly (and from an aggregator older than relays).
    public var via: [String]?
    /// Set when this entry is a relay reporting itself (its id is its relay_id): its spool and
    /// upstream link. Its backlog and lag figures then describe the spool.
    public var relay: RelayView?
    /// The aggregator URL the gateway delivers to now, as it reported it (one of several it
    /// may know), and its failovers since its agent started; nil from an older agent.
    public var aggregator: String?
    public var failovers: UInt64?
    /// Readings the gateway counts as acknowledged (by any aggregator) since its buffer was
    /// created, as it last reported: unlike `readingsSynced`, which each aggregator counts for
    /// itself, it does not depend on which aggregator took which batch. Nil from an older aggregator.
    public var acknowledgedTotal: UInt64?

    public init(gatewayID: String) {
        self.gatewayID = gatewayID
        lastSeenMs = 0
        stale = false
        agentVersion = ""
        brokerConnected = false
        backlogReadings = 0
        backlogBytes = 0
        oldestUnsentMs = 0
        readingsSynced = 0
        batchesSynced = 0
        duplicateBatches = 0
        quarantinedTotal = 0
        droppedTotal = 0
        setAsideBatches = 0
        redeliveriesTotal = 0
        bufferFull = false
        ingestRate = 0
        sendRate = 0
        lastError = ""
        lastErrorMs = 0
        clockSkewMs = 0
        roundTripMs = -1
        lastBatchMs = 0
    }

    /// Fields added after the first release are optional in the JSON, so a newer tributaryctl
    /// reads an older aggregator's answer.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(gatewayID: try c.decode(String.self, forKey: .gatewayID))
        lastSeenMs = try c.decode(Int64.self, forKey: .lastSeenMs)
        stale = try c.decode(Bool.self, forKey: .stale)
        agentVersion = try c.decode(String.self, forKey: .agentVersion)
        brokerConnected = try c.decode(Bool.self, forKey: .brokerConnected)
        backlogReadings = try c.decode(UInt64.self, forKey: .backlogReadings)
        backlogBytes = try c.decode(UInt64.self, forKey: .backlogBytes)
        oldestUnsentMs = try c.decode(Int64.self, forKey: .oldestUnsentMs)
        readingsSynced = try c.decode(UInt64.self, forKey: .readingsSynced)
        batchesSynced = try c.decode(UInt64.self, forKey: .batchesSynced)
        duplicateBatches = try c.decode(UInt64.self, forKey: .duplicateBatches)
        quarantinedTotal = try c.decode(UInt64.self, forKey: .quarantinedTotal)
        droppedTotal = try c.decode(UInt64.self, forKey: .droppedTotal)
        withheldTotal = try c.decodeIfPresent(UInt64.self, forKey: .withheldTotal) ?? 0
        setAsideBatches = try c.decode(UInt64.self, forKey: .setAsideBatches)
        redeliveriesTotal = try c.decode(UInt64.self, forKey: .redeliveriesTotal)
        bufferFull = try c.decode(Bool.self, forKey: .bufferFull)
        ingestRate = try c.decode(Double.self, forKey: .ingestRate)
        sendRate = try c.decode(Double.self, forKey: .sendRate)
        lastError = try c.decode(String.self, forKey: .lastError)
        lastErrorMs = try c.decode(Int64.self, forKey: .lastErrorMs)
        clockSkewMs = try c.decode(Int64.self, forKey: .clockSkewMs)
        roundTripMs = try c.decode(Int64.self, forKey: .roundTripMs)
        lastBatchMs = try c.decode(Int64.self, forKey: .lastBatchMs)
        chain = try c.decodeIfPresent(ChainView.self, forKey: .chain)
        quarantineReasons = try c.decodeIfPresent([QuarantineReasonCount].self, forKey: .quarantineReasons)
        via = try c.decodeIfPresent([String].self, forKey: .via)
        relay = try c.decodeIfPresent(RelayView.self, forKey: .relay)
        aggregator = try c.decodeIfPresent(String.self, forKey: .aggregator)
        failovers = try c.decodeIfPresent(UInt64.self, forKey: .failovers)
        acknowledgedTotal = try c.decodeIfPresent(UInt64.self, forKey: .acknowledgedTotal)
    }

    /// How far behind the gateway is: the age of its oldest unacknowledged reading. That time is
    /// on the gateway's clock, so it is moved onto the aggregator's (`nowMs`) by the estimated
    /// skew first; otherwise a gateway with a slow clock would look behind while caught up.
    public func lagMs(nowMs: Int64) -> Int64 {
        oldestUnsentMs > 0 ? max(0, nowMs.saturatingMinus(aggregatorTime(oldestUnsentMs))) : 0
    }

    /// A time the gateway reported (its clock) on the aggregator's clock.
    public func aggregatorTime(_ gatewayMs: Int64) -> Int64 {
        gatewayMs.saturatingMinus(clockSkewMs)
    }

    enum CodingKeys: String, CodingKey {
        case gatewayID = "gateway_id"
        case lastSeenMs = "last_seen_ms"
        case stale
        case agentVersion = "agent_version"
        case brokerConnected = "broker_connected"
        case backlogReadings = "backlog_readings"
        case backlogBytes = "backlog_bytes"
        case oldestUnsentMs = "oldest_unsent_ms"
        case readingsSynced = "readings_synced"
        case batchesSynced = "batches_synced"
        case duplicateBatches = "duplicate_batches"
        case quarantinedTotal = "quarantined_total"
        case droppedTotal = "dropped_total"
        case withheldTotal = "withheld_total"
        case setAsideBatches = "set_aside_batches"
        case redeliveriesTotal = "redeliveries_total"
        case bufferFull = "buffer_full"
        case ingestRate = "ingest_rate"
        case sendRate = "send_rate"
        case lastError = "last_error"
        case lastErrorMs = "last_error_ms"
        case clockSkewMs = "clock_skew_ms"
        case quarantineReasons = "quarantine_reasons"
        case via, relay, aggregator, failovers
        case acknowledgedTotal = "acknowledged_total"
        case roundTripMs = "round_trip_ms"
        case lastBatchMs = "last_batch_ms"
        case chain
    }
}

/// One kind of reason a gateway's payloads were quarantined for (the text before its first
/// colon), how many its buffer holds, and the latest full reason.
public struct QuarantineReasonCount: Codable, Sendable, Equatable {
    public var kind: String
    public var count: UInt64
    public var example: String

    public init(kind: String, count: UInt64, example: String) {
        self.kind = kind
        self.count = count
        self.example = example
    }
}

/// A relay as its upstream last heard of it (`tributaryctl relays`).
public struct RelayView: Codable, Sendable, Equatable {
    public var spoolBatches: UInt64
    public var spoolBytes: UInt64
    /// When the oldest unforwarded batch arrived at the relay, on its clock; 0 if none.
    public var oldestUnforwardedMs: Int64
    public var upstreamUp: Bool
    public var forwardedBatchesTotal: UInt64
    public var forwardedReadingsTotal: UInt64
    public var setAsideBatches: UInt64
    public var forwardRate: Double
    /// Gateways in the relay's own registry.
    public var gateways: UInt32
    public var lastError: String

    public init(spoolBatches: UInt64 = 0, spoolBytes: UInt64 = 0, oldestUnforwardedMs: Int64 = 0, upstreamUp: Bool = false,
                forwardedBatchesTotal: UInt64 = 0, forwardedReadingsTotal: UInt64 = 0, setAsideBatches: UInt64 = 0,
                forwardRate: Double = 0, gateways: UInt32 = 0, lastError: String = "") {
        self.spoolBatches = spoolBatches
        self.spoolBytes = spoolBytes
        self.oldestUnforwardedMs = oldestUnforwardedMs
        self.upstreamUp = upstreamUp
        self.forwardedBatchesTotal = forwardedBatchesTotal
        self.forwardedReadingsTotal = forwardedReadingsTotal
        self.setAsideBatches = setAsideBatches
        self.forwardRate = forwardRate
        self.gateways = gateways
        self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case spoolBatches = "spool_batches", spoolBytes = "spool_bytes", oldestUnforwardedMs = "oldest_unforwarded_ms"
        case upstreamUp = "upstream_up", forwardedBatchesTotal = "forwarded_batches_total"
        case forwardedReadingsTotal = "forwarded_readings_total", setAsideBatches = "set_aside_batches"
        case forwardRate = "forward_rate", gateways, lastError = "last_error"
    }
}
