import Foundation
import Synchronization
import TributaryCore
import TributaryRuntime
import TributarySQLite
import TributaryWire
import TributaryCrypto

/// Opening a buffer file: making it, checking it is ours, and upgrading older layouts.
extension BufferStore {
    static func prepare(_ c: SQLiteConnection, path: String, gatewayID: String, synchronous: Synchronous) throws(BufferError) -> (String, Counters) {
        do {
            let appID = Int32(truncatingIfNeeded: try c.scalar("PRAGMA application_id")?.int64 ?? 0)
            let tableCount = try c.scalar("SELECT count(*) FROM sqlite_master")?.int64 ?? 0
            if appID != applicationID && (appID != 0 || tableCount > 0) {
                throw BufferError.notABuffer(path: path, detail: "application_id \(appID), \(tableCount) schema objects")
            }
            let check = try c.scalar("PRAGMA quick_check")?.string ?? "no answer"
            guard check == "ok" else { throw BufferError.corrupt(path: path, detail: check) }
            try c.execute("PRAGMA journal_mode = WAL")
            try c.execute("PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
            // A small WAL (1 MiB) keeps the data in the main file, where freed pages are reused,
            // and stays well inside the disk reserve.
            try c.execute("PRAGMA wal_autocheckpoint = 256")
            if tableCount == 0 {
                try create(c, gatewayID: gatewayID)
            }
            try addSentColumn(c)
            // The last payload stored per topic, for retained messages (see `IngestService`).
            try c.execute("CREATE TABLE IF NOT EXISTS topic_payloads (topic TEXT PRIMARY KEY, digest INTEGER NOT NULL) WITHOUT ROWID")
            let meta = Dictionary(uniqueKeysWithValues: try c.query("SELECT key, value FROM meta").compactMap { row -> (String, String)? in
                guard let k = row[0].string, let v = row[1].string else { return nil }
                return (k, v)
            })
            let version = Int(meta["format_version"] ?? "") ?? 0
            guard version <= formatVersion else { throw BufferError.newerFormat(path: path, version: version) }
            guard let owner = meta["gateway_id"], let epoch = meta["epoch"] else {
                throw BufferError.notABuffer(path: path, detail: "meta table lacks gateway_id or epoch")
            }
            guard GatewayID.same(owner, gatewayID) else { throw BufferError.foreignGateway(path: path, owner: owner, expected: gatewayID) }
            try addEpochColumn(c, epoch: epoch)
            return (epoch, try loadCounters(c))
        } catch let error as BufferError {
            throw error
        } catch let error as SQLiteError {
            throw error.isCorrupt ? .corrupt(path: path, detail: error.message) : .sqlite(error)
        } catch {
            throw .notABuffer(path: path, detail: "\(error)")
        }
    }

    static func create(_ c: SQLiteConnection, gatewayID: String) throws(SQLiteError) {
        try c.transaction { () throws(SQLiteError) in
            try c.execute("""
                PRAGMA application_id = \(applicationID);
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                -- Readings not yet sealed into a batch, in arrival order.
                CREATE TABLE readings (
                    id INTEGER PRIMARY KEY,
                    gateway_id TEXT NOT NULL, sensor_id TEXT NOT NULL, metric TEXT NOT NULL, topic TEXT NOT NULL,
                    time_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
                    value_type INTEGER NOT NULL, value_real REAL, value_int INTEGER, value_text TEXT,
                    unit TEXT, labels TEXT);
                -- Sealed batches: identity (gateway, epoch, sequence) and encoded contents fixed until acknowledged.
                CREATE TABLE batches (
                    sequence INTEGER PRIMARY KEY,
                    epoch TEXT NOT NULL,
                    payload BLOB NOT NULL,
                    reading_count INTEGER NOT NULL,
                    oldest_received_ms INTEGER NOT NULL,
                    sealed_at_ms INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    set_aside INTEGER NOT NULL DEFAULT 0,
                    sent INTEGER NOT NULL DEFAULT 0,  -- claimed for sending at least once
                    last_error TEXT);
                -- Payloads that could not be decoded, kept for inspection.
                CREATE TABLE quarantine (
                    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
                    reason TEXT NOT NULL, received_ms INTEGER NOT NULL);
                """)
            try c.run("INSERT INTO meta VALUES ('format_version', ?), ('gateway_id', ?), ('epoch', ?), ('created_ms', ?)",
                      String(formatVersion), gatewayID, UUID().uuidString.lowercased(), String(WallClock.nowMs()))
            for name in ["next_sequence", "ingested_total", "acknowledged_total", "quarantined_total", "dropped_total"] {
                try c.run("INSERT INTO counters VALUES (?, ?)", name, name == "next_sequence" ? 1 : 0)
            }
        }
    }

    /// Buffers made before `batches.epoch` existed get it: their batches are all of the one epoch.
    static func addEpochColumn(_ c: SQLiteConnection, epoch: String) throws(SQLiteError) {
        var columns: Set<String> = []
        try c.forEach("PRAGMA table_info(batches)") { row in columns.insert(row.string(1) ?? "") }
        guard !columns.contains("epoch") else { return }
        try c.transaction { () throws(SQLiteError) in
            try c.execute("ALTER TABLE batches ADD COLUMN epoch TEXT")
            try c.run("UPDATE batches SET epoch = ?", epoch)
        }
    }

    /// Buffers made before `batches.sent` existed get it; a batch with attempts was sent.
    static func addSentColumn(_ c: SQLiteConnection) throws(SQLiteError) {
        var columns: Set<String> = []
        try c.forEach("PRAGMA table_info(batches)") { row in columns.insert(row.string(1) ?? "") }
        guard !columns.contains("sent") else { return }
        try c.transaction { () throws(SQLiteError) in
            try c.execute("ALTER TABLE batches ADD COLUMN sent INTEGER NOT NULL DEFAULT 0")
            try c.execute("UPDATE batches SET sent = 1 WHERE attempts > 0")
        }
    }

    static func loadCounters(_ c: SQLiteConnection) throws(SQLiteError) -> Counters {
        var counters = Counters()
        try c.forEach("SELECT name, value FROM counters") { row in
            let value = row.int64(1)
            switch row.string(0) {
            case "ingested_total": counters.ingestedTotal = value
            case "acknowledged_total": counters.acknowledgedTotal = value
            case "quarantined_total": counters.quarantinedTotal = value
            case "dropped_total": counters.droppedTotal = value
            case "redeliveries_total": counters.redeliveriesTotal = value
            case "quarantine_replayed_total": counters.quarantineReplayedTotal = value
            case "quarantine_purged_total": counters.quarantinePurgedTotal = value
            default: break
            }
        }
        counters.unsealedReadings = try c.scalar("SELECT count(*) FROM readings")?.int64 ?? 0
        counters.quarantineHeld = try c.scalar("SELECT count(*) FROM quarantine")?.int64 ?? 0
        try c.forEach("SELECT set_aside, count(*), coalesce(sum(reading_count), 0) FROM batches GROUP BY set_aside") { row in
            if row.int64(0) == 0 {
                counters.sealedBatches = row.int64(1)
                counters.sealedReadings = row.int64(2)
            } else {
                counters.setAsideBatches = row.int64(1)
            }
        }
        return counters
    }
}
