import Foundation
import Synchronization
import SwiftProtobuf
import TributaryAdminAPI
import TributaryCore
import TributarySQLite
import TributaryWire

/// What the aggregator knows about each gateway, kept in `registry.sqlite` in its data
/// directory so a restart keeps it: the last status every request carries, running totals, and
/// a short history of what became of each gateway's recent requests.
public final class FleetRegistry: Sendable {
    /// Sync events kept per gateway for `tributaryctl gateway ID`; older ones are pruned.
    public static let eventsPerGateway = 100

    private let db: SQLiteDatabase
    /// The gateways it holds: a new one is taken only within `limits.max_gateways`. By bytes,
    /// as the registry's table keys them: by `String`, the byte variants of one canonically
    /// equivalent id took one place under the cap and a row each (2^k of them for k syllables).
    private let known: Mutex<Set<ExactString>>

    public init(path: String) throws(SQLiteError) {
        db = try SQLiteDatabase(path: path)
        let ids = try db.withConnection { c throws(SQLiteError) -> Set<ExactString> in
            try c.execute("PRAGMA journal_mode = WAL")
            try Self.migrate(c)
            var ids: Set<ExactString> = []
            try c.forEach("SELECT gateway_id FROM gateways") { row in if let id = row.string(0) { ids.insert(ExactString(id)) } }
            return ids
        }
        known = Mutex(ids)
    }

    /// Whether a request from `gatewayID` may be recorded: a gateway it holds, or a new one
    /// while it holds fewer than `max`. Without gateway tokens any client can name any id, and
    /// each new one grows the registry, the fleet view and `/metrics` for good.
    public func admits(_ gatewayID: String, max: Int) -> Bool {
        known.withLock { $0.contains(ExactString(gatewayID)) || $0.count < max }
    }

    public var gatewayCount: Int { known.withLock { $0.count } }

    /// Version 1 had only `gateways`; version 2 adds the round trip, the last batch time and
    /// the history; version 3 the hash chains. `PRAGMA user_version` records which one the file has.
    private static func migrate(_ c: SQLiteConnection) throws(SQLiteError) {
        let version = try c.scalar("PRAGMA user_version")?.int64 ?? 0
        if version < 2 { try migrateToVersion2(c) }
        if version < 3 {
            try c.execute("""
                CREATE TABLE IF NOT EXISTS chains (
                    gateway_id TEXT    NOT NULL,
                    epoch      TEXT    NOT NULL,
                    state      TEXT    NOT NULL,  -- ChainTracker, JSON
                    updated_ms INTEGER NOT NULL,
                    PRIMARY KEY (gateway_id, epoch)
                ) WITHOUT ROWID;
                PRAGMA user_version = 3;
                """)
        }
    }

    private static func migrateToVersion2(_ c: SQLiteConnection) throws(SQLiteError) {
        try c.transaction { () throws(SQLiteError) in
            try c.execute("""
                CREATE TABLE IF NOT EXISTS gateways (
                    gateway_id        TEXT PRIMARY KEY,
                    last_seen_ms      INTEGER NOT NULL,
                    status            BLOB    NOT NULL,  -- the last tributary.v1.GatewayStatus
                    readings_synced   INTEGER NOT NULL DEFAULT 0,
                    batches_synced    INTEGER NOT NULL DEFAULT 0,
                    duplicate_batches INTEGER NOT NULL DEFAULT 0,
                    clock_skew_ms     INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID;
                """)
            var columns: Set<String> = []
            try c.forEach("PRAGMA table_info(gateways)") { row in columns.insert(row.string(1) ?? "") }
            if !columns.contains("round_trip_ms") {
                try c.execute("ALTER TABLE gateways ADD COLUMN round_trip_ms INTEGER NOT NULL DEFAULT -1")
            }
            if !columns.contains("last_batch_ms") {
                try c.execute("ALTER TABLE gateways ADD COLUMN last_batch_ms INTEGER NOT NULL DEFAULT 0")
            }
            try c.execute("""
                CREATE TABLE IF NOT EXISTS sync_events (
                    id         INTEGER PRIMARY KEY,
                    gateway_id TEXT    NOT NULL,
                    at_ms      INTEGER NOT NULL,
                    kind       TEXT    NOT NULL,  -- SyncEvent.Kind
                    batch      TEXT    NOT NULL,
                    readings   INTEGER NOT NULL,
                    detail     TEXT    NOT NULL
                );
                CREATE INDEX IF NOT EXISTS sync_events_by_gateway ON sync_events (gateway_id, id);
                PRAGMA user_version = 2;
                """)
        }
    }

    /// Epochs whose chain is kept per gateway: an agent that wipes its buffer starts a new one.
    static let chainEpochsPerGateway = 4

    public enum Event: Sendable {
        /// Written to the sink; `chain` is the batch's link, for provenance.
        case accepted(BatchIdentity, readings: Int, chain: ChainLink)
        /// Already written; its link still counts for the chain (a batch whose first answer was
        /// lost, or whose registry update failed, is known only from its resend).
        case duplicate(BatchIdentity, readings: Int, chain: ChainLink)
        case heartbeat
        /// The sink could not take the batch; the gateway still holds it.
        case refused(BatchIdentity, readings: Int, reason: String)
        /// The batch was refused for good (4xx).
        case rejected(BatchIdentity?, reason: String)
    }

    /// Records a request's status and what became of it. The status a batch carries describes
    /// the gateway once the batch is committed; when the sink refused it, the round's readings
    /// are added back so the backlog shown is what the gateway really holds.
    public func record(_ status: Tributary_V1_GatewayStatus, event: Event, receivedAtMs: Int64) async throws {
        var adjusted = status.sanitized()
        if case .refused = event { adjusted = Self.uncommitted(adjusted) }
        let status = adjusted
        let blob = try status.serializedBytes() as [UInt8]
        let (skew, roundTrip) = Self.clock(status, receivedAtMs: receivedAtMs)
        let (readings, batches, duplicates, batchTime): (Int, Int, Int, Int64) = switch event {
        case .accepted(_, let n, _): (n, 1, 0, receivedAtMs)
        case .duplicate: (0, 0, 1, 0)
        case .heartbeat, .refused, .rejected: (0, 0, 0, 0)
        }
        let entry = Self.historyEntry(event, atMs: receivedAtMs)
        let prune = Self.eventsPerGateway
        known.withLock { _ = $0.insert(ExactString(status.gatewayID)) }
        try await db.perform { c in
            try c.transaction { () throws(SQLiteError) in
                _ = try c.run("""
                    INSERT INTO gateways (gateway_id, last_seen_ms, status, readings_synced, batches_synced, duplicate_batches,
                                          clock_skew_ms, round_trip_ms, last_batch_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (gateway_id) DO UPDATE SET
                        last_seen_ms = excluded.last_seen_ms, status = excluded.status,
                        readings_synced = readings_synced + excluded.readings_synced,
                        batches_synced = batches_synced + excluded.batches_synced,
                        duplicate_batches = duplicate_batches + excluded.duplicate_batches,
                        clock_skew_ms = excluded.clock_skew_ms, round_trip_ms = excluded.round_trip_ms,
                        last_batch_ms = max(last_batch_ms, excluded.last_batch_ms)
                    """, [status.gatewayID, receivedAtMs, blob, readings, batches, duplicates, skew, roundTrip, batchTime])
                // Heartbeats in a row are one entry, moved forward: an idle gateway's heartbeats
                // would otherwise push its last refusals and errors out of the history.
                let merged = entry.kind == .heartbeat ? try c.run("""
                    UPDATE sync_events SET at_ms = ? WHERE kind = 'heartbeat' AND id =
                        (SELECT max(id) FROM sync_events WHERE gateway_id = ?)
                    """, [entry.atMs, status.gatewayID]) : 0
                if merged == 0 {
                    _ = try c.run("""
                        INSERT INTO sync_events (gateway_id, at_ms, kind, batch, readings, detail) VALUES (?, ?, ?, ?, ?, ?)
                        """, [status.gatewayID, entry.atMs, entry.kind.rawValue, entry.batch, entry.readings, entry.detail])
                }
                _ = try c.run("""
                    DELETE FROM sync_events WHERE gateway_id = ? AND id <=
                        (SELECT id FROM sync_events WHERE gateway_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
                    """, [status.gatewayID, status.gatewayID, prune])
                switch event {
                case .accepted(let identity, _, let link), .duplicate(let identity, _, let link):
                    try Self.follow(c, identity: identity, link: link, atMs: receivedAtMs)
                case .heartbeat, .refused, .rejected:
                    break
                }
            }
        }
    }

    /// Moves the batch's epoch chain on by one batch (see `ChainTracker`), in the transaction
    /// that records it.
    private static func follow(_ c: SQLiteConnection, identity: BatchIdentity, link: ChainLink, atMs: Int64) throws(SQLiteError) {
        let stored = try c.scalar("SELECT state FROM chains WHERE gateway_id = ? AND epoch = ?", identity.gatewayID, identity.epoch)?.string
        var tracker: ChainTracker
        let newEpoch: Bool
        if let stored, let decoded = try? JSONDecoder().decode(ChainTracker.self, from: Data(stored.utf8)) {
            tracker = decoded
            tracker.add(sequence: identity.sequence, link: link, atMs: atMs)
            newEpoch = false
        } else {
            tracker = ChainTracker(epoch: identity.epoch, sequence: identity.sequence, link: link)
            newEpoch = true
        }
        guard let encoded = try? JSONEncoder().encode(tracker) else { return }
        _ = try c.run("""
            INSERT INTO chains (gateway_id, epoch, state, updated_ms) VALUES (?, ?, ?, ?)
            ON CONFLICT (gateway_id, epoch) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms
            """, [identity.gatewayID, identity.epoch, String(decoding: encoded, as: UTF8.self), atMs])
        // Only a new epoch can push the gateway past its epochs kept.
        guard newEpoch else { return }
        _ = try c.run("""
            DELETE FROM chains WHERE gateway_id = ? AND epoch NOT IN
                (SELECT epoch FROM chains WHERE gateway_id = ? ORDER BY updated_ms DESC LIMIT ?)
            """, [identity.gatewayID, identity.gatewayID, chainEpochsPerGateway])
    }

    /// The status as it is while the round's batches are still on the gateway. (Both figures
    /// are bounded by `sanitized()`, so the sum cannot overflow.)
    static func uncommitted(_ status: Tributary_V1_GatewayStatus) -> Tributary_V1_GatewayStatus {
        var status = status
        status.backlogReadings += status.roundReadings
        if status.roundOldestMs > 0 {
            status.oldestUnsentMs = status.oldestUnsentMs > 0 ? min(status.oldestUnsentMs, status.roundOldestMs) : status.roundOldestMs
        }
        status.roundReadings = 0
        status.roundOldestMs = 0
        return status
    }

    /// Skew and round trip from the gateway's last completed exchange (NTP-style). Without one
    /// (its first request), the gateway's send time against our receive time: skew plus the
    /// one-way delay, with the round trip -1 (unknown).
    static func clock(_ status: Tributary_V1_GatewayStatus, receivedAtMs: Int64) -> (skewMs: Int64, roundTripMs: Int64) {
        let exchange = status.lastExchange.exchange
        if status.hasLastExchange, exchange.isComplete { return (exchange.gatewayAheadMs, exchange.roundTripMs) }
        return (status.clockMs > 0 ? status.clockMs.saturatingMinus(receivedAtMs) : 0, -1)
    }

    static func historyEntry(_ event: Event, atMs: Int64) -> SyncEvent {
        switch event {
        // Identities are client text: cleaned before they are stored, as every other field.
        case .accepted(let id, let n, _): SyncEvent(atMs: atMs, kind: .accepted, batch: Printable.clean("\(id)", maxLength: 256), readings: n)
        case .duplicate(let id, let n, _): SyncEvent(atMs: atMs, kind: .duplicate, batch: Printable.clean("\(id)", maxLength: 256), readings: n)
        case .heartbeat: SyncEvent(atMs: atMs, kind: .heartbeat)
        case .refused(let id, let n, let reason):
            SyncEvent(atMs: atMs, kind: .refused, batch: Printable.clean("\(id)", maxLength: 256), readings: n, detail: Printable.clean(reason, maxLength: 512))
        case .rejected(let id, let reason):
            SyncEvent(atMs: atMs, kind: .rejected, batch: id.map { Printable.clean("\($0)", maxLength: 256) } ?? "",
                      detail: Printable.clean(reason, maxLength: 512))
        }
    }

    public func gateways(nowMs: Int64, staleAfterSeconds: Int) async throws -> [GatewayView] {
        try await views(where: "", [], nowMs: nowMs, staleAfterSeconds: staleAfterSeconds)
    }

    /// One gateway with its history (newest first), or nil if it never reported.
    public func gateway(_ id: String, nowMs: Int64, staleAfterSeconds: Int) async throws -> GatewayDetail? {
        guard let view = try await views(where: "WHERE gateway_id = ?", [id], nowMs: nowMs, staleAfterSeconds: staleAfterSeconds).first else {
            return nil
        }
        let history = try await db.perform { c in
            var events: [SyncEvent] = []
            try c.forEach("SELECT at_ms, kind, batch, readings, detail FROM sync_events WHERE gateway_id = ? ORDER BY id DESC", [id]) { row in
                events.append(SyncEvent(atMs: row.int64(0), kind: SyncEvent.Kind(rawValue: row.string(1) ?? "") ?? .rejected,
                                        batch: row.string(2) ?? "", readings: Int(row.int64(3)), detail: row.string(4) ?? ""))
            }
            return events
        }
        return GatewayDetail(generatedAtMs: nowMs, staleAfterSeconds: staleAfterSeconds, gateway: view, history: history)
    }

    private func views(where clause: String, _ bindings: [String], nowMs: Int64, staleAfterSeconds: Int) async throws -> [GatewayView] {
        try await db.perform { c in
            var views: [GatewayView] = []
            try c.forEach("""
                SELECT gateway_id, last_seen_ms, status, readings_synced, batches_synced, duplicate_batches, clock_skew_ms,
                       round_trip_ms, last_batch_ms,
                       (SELECT state FROM chains WHERE chains.gateway_id = gateways.gateway_id ORDER BY updated_ms DESC LIMIT 1)
                FROM gateways \(clause) ORDER BY gateway_id
                """, bindings) { row in
                var view = GatewayView(gatewayID: row.string(0) ?? "")
                view.lastSeenMs = row.int64(1)
                view.stale = nowMs.saturatingMinus(view.lastSeenMs) > Int64(staleAfterSeconds) * 1000
                view.readingsSynced = UInt64(clamping: row.int64(3))
                view.batchesSynced = UInt64(clamping: row.int64(4))
                view.duplicateBatches = UInt64(clamping: row.int64(5))
                view.clockSkewMs = row.int64(6)
                view.roundTripMs = row.int64(7)
                view.lastBatchMs = row.int64(8)
                if let state = row.string(9), let tracker = try? JSONDecoder().decode(ChainTracker.self, from: Data(state.utf8)) {
                    view.chain = tracker.view(nowMs: nowMs)
                }
                if let status = try? Tributary_V1_GatewayStatus(serializedBytes: row[2].bytes ?? []) {
                    view.agentVersion = status.agentVersion
                    view.brokerConnected = status.brokerConnected
                    view.backlogReadings = status.backlogReadings
                    view.backlogBytes = status.backlogBytes
                    view.oldestUnsentMs = status.oldestUnsentMs
                    view.quarantinedTotal = status.quarantinedTotal
                    view.droppedTotal = status.droppedTotal
                    view.withheldTotal = status.withheldTotal
                    view.acknowledgedTotal = status.acknowledgedTotal
                    view.setAsideBatches = status.setAsideBatches
                    view.redeliveriesTotal = status.redeliveriesTotal
                    view.bufferFull = status.bufferFull
                    view.ingestRate = status.ingestRate
                    view.sendRate = status.sendRate
                    view.lastError = status.lastError
                    view.lastErrorMs = status.lastErrorMs
                    if status.hasRelay {
                        let r = status.relay
                        view.relay = RelayView(spoolBatches: r.spoolBatches, spoolBytes: r.spoolBytes, oldestUnforwardedMs: r.oldestUnforwardedMs,
                                               upstreamUp: r.upstreamUp, forwardedBatchesTotal: r.forwardedBatchesTotal,
                                               forwardedReadingsTotal: r.forwardedReadingsTotal, setAsideBatches: r.setAsideBatches,
                                               forwardRate: r.forwardRate, gateways: r.gateways, lastError: Printable.clean(r.lastError, maxLength: 300))
                    }
                    if !status.aggregator.isEmpty {
                        view.aggregator = Printable.clean(status.aggregator, maxLength: 256)
                        view.failovers = status.failoversTotal
                    }
                    if !status.via.isEmpty {
                        view.via = status.via.prefix(64).map { Printable.clean($0, maxLength: 128) }
                    }
                    if !status.quarantineReasons.isEmpty {
                        view.quarantineReasons = status.quarantineReasons.prefix(5).map {
                            QuarantineReasonCount(kind: Printable.clean($0.kind, maxLength: 80), count: $0.count,
                                                  example: Printable.clean($0.example, maxLength: 300))
                        }
                    }
                }
                views.append(view)
            }
            return views
        }
    }

    public func close() { db.close() }
}
