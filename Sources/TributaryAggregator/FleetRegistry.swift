import SwiftProtobuf
import TributaryCore
import TributarySQLite
import TributaryWire

/// What the aggregator knows about each gateway, kept in `registry.sqlite` in its data
/// directory so a restart keeps it. Updated from the status every request carries.
public final class FleetRegistry: Sendable {
    private let db: SQLiteDatabase

    public init(path: String) throws(SQLiteError) {
        db = try SQLiteDatabase(path: path)
        try db.withConnection { c throws(SQLiteError) in
            try c.execute("PRAGMA journal_mode = WAL")
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
        }
    }

    public enum Event: Sendable {
        case accepted(readings: Int)
        case duplicate
        case heartbeat
    }

    /// Records a request's status after its batch (if any) was handled.
    public func record(_ status: Tributary_V1_GatewayStatus, event: Event, receivedAtMs: Int64) async throws {
        let blob = try status.serializedBytes() as [UInt8]
        // The gateway's clock at send time against ours at receipt: skew plus one-way delay.
        let skew = status.clockMs > 0 ? status.clockMs - receivedAtMs : 0
        let (readings, batches, duplicates): (Int, Int, Int) = switch event {
        case .accepted(let n): (n, 1, 0)
        case .duplicate: (0, 0, 1)
        case .heartbeat: (0, 0, 0)
        }
        try await db.perform { c in
            try c.run("""
                INSERT INTO gateways (gateway_id, last_seen_ms, status, readings_synced, batches_synced, duplicate_batches, clock_skew_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (gateway_id) DO UPDATE SET
                    last_seen_ms = excluded.last_seen_ms, status = excluded.status,
                    readings_synced = readings_synced + excluded.readings_synced,
                    batches_synced = batches_synced + excluded.batches_synced,
                    duplicate_batches = duplicate_batches + excluded.duplicate_batches,
                    clock_skew_ms = excluded.clock_skew_ms
                """, [status.gatewayID, receivedAtMs, blob, readings, batches, duplicates, skew])
        }
    }

    public func gateways(nowMs: Int64, staleAfterSeconds: Int) async throws -> [GatewayView] {
        try await db.perform { c in
            var views: [GatewayView] = []
            try c.forEach("""
                SELECT gateway_id, last_seen_ms, status, readings_synced, batches_synced, duplicate_batches, clock_skew_ms
                FROM gateways ORDER BY gateway_id
                """) { row in
                var view = GatewayView(gatewayID: row.string(0) ?? "")
                view.lastSeenMs = row.int64(1)
                view.stale = nowMs - view.lastSeenMs > Int64(staleAfterSeconds) * 1000
                view.readingsSynced = UInt64(row.int64(3))
                view.batchesSynced = UInt64(row.int64(4))
                view.duplicateBatches = UInt64(row.int64(5))
                view.clockSkewMs = row.int64(6)
                if let status = try? Tributary_V1_GatewayStatus(serializedBytes: row[2].bytes ?? []) {
                    view.agentVersion = status.agentVersion
                    view.brokerConnected = status.brokerConnected
                    view.backlogReadings = status.backlogReadings
                    view.backlogBytes = status.backlogBytes
                    view.oldestUnsentMs = status.oldestUnsentMs
                    view.quarantinedTotal = status.quarantinedTotal
                    view.droppedTotal = status.droppedTotal
                    view.setAsideBatches = status.setAsideBatches
                    view.redeliveriesTotal = status.redeliveriesTotal
                    view.bufferFull = status.bufferFull
                    view.ingestRate = status.ingestRate
                    view.sendRate = status.sendRate
                    view.lastError = status.lastError
                    view.lastErrorMs = status.lastErrorMs
                }
                views.append(view)
            }
            return views
        }
    }

    public func close() { db.close() }
}
