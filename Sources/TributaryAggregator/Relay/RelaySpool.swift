import Foundation
import Synchronization
import TributaryCore
import TributaryRuntime
import TributarySQLite
import TributaryWire

/// A relay's custody of what it accepted and has not yet forwarded: a SQLite file in
/// `data_dir` (`spool.sqlite`, `synchronous=FULL`). A batch is taken into it before the gateway
/// is answered, kept byte for byte with the status it came with, and deleted only once the
/// upstream answered accepted or duplicate. A crash between that answer and the delete means
/// one resend, which the upstream's ledger answers duplicate.
public final class RelaySpool: Sendable {
    /// One batch waiting to go upstream.
    public struct Entry: Sendable {
        public let id: Int64
        public let identity: BatchIdentity
        /// The batch as the gateway sent it (its re-encoding, which the hash chain is over).
        public let batch: [UInt8]
        /// The gateway's status as it came, with `via` as it arrived (this relay not yet in it).
        public let status: [UInt8]
        public let readings: Int
        public let receivedMs: Int64
        public let attempts: Int
    }

    /// What the spool holds, for metrics, `/readyz`-style checks and the next tier.
    public struct Figures: Sendable, Equatable {
        public var batches = 0
        public var bytes: Int64 = 0
        public var readings: Int64 = 0
        /// When the oldest batch still waiting arrived here; 0 when none.
        public var oldestReceivedMs: Int64 = 0
        public var setAside = 0
        public var forwardedBatches: UInt64 = 0
        public var forwardedReadings: UInt64 = 0
    }

    public enum Taken: Sendable, Equatable {
        /// Now in the spool.
        case stored
        /// The spool already holds this identity with the same contents (a resend after a lost ack).
        case duplicate
        /// The spool holds this identity with other contents.
        case conflict
        /// Not taken: it would put the spool past its quota.
        case full
    }

    public let path: String
    private let db: SQLiteDatabase
    private let figures: Mutex<Figures>

    public init(path: String) throws(SQLiteError) {
        self.path = path
        db = try SQLiteDatabase(path: path)
        let loaded = try db.withConnection { c throws(SQLiteError) -> (Figures, Int) in
            try c.execute("PRAGMA journal_mode = WAL")
            // Custody: an accepted batch must survive a power cut, not only a crash.
            try c.execute("PRAGMA synchronous = FULL")
            try c.execute("""
                CREATE TABLE IF NOT EXISTS spool (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    gateway_id TEXT NOT NULL, epoch TEXT NOT NULL, sequence INTEGER NOT NULL,
                    digest INTEGER NOT NULL,
                    batch BLOB NOT NULL, status BLOB NOT NULL,
                    readings INTEGER NOT NULL, received_ms INTEGER NOT NULL,
                    oldest_reading_ms INTEGER NOT NULL DEFAULT 0,  -- receive time of its oldest reading, on the gateway's clock
                    attempts INTEGER NOT NULL DEFAULT 0,
                    set_aside INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT,
                    UNIQUE (gateway_id, epoch, sequence));
                CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                """)
            var f = Figures()
            // What the upstream refused last run (a loop, a path too long, a body too large for
            // it) is tried again once per start: the gateways were told it is in custody, so
            // only forwarding it ends that, and a restart is how an operator applies a fix.
            let requeued = Int(try c.run("UPDATE spool SET set_aside = 0 WHERE set_aside = 1"))
            if let row = try c.query("""
                SELECT count(*), coalesce(sum(length(batch) + length(status)), 0), coalesce(sum(readings), 0), coalesce(min(received_ms), 0)
                FROM spool WHERE set_aside = 0
                """).first {
                f.batches = Int(row[0].int64 ?? 0)
                f.bytes = row[1].int64 ?? 0
                f.readings = row[2].int64 ?? 0
                f.oldestReceivedMs = row[3].int64 ?? 0
            }
            for row in try c.query("SELECT name, value FROM counters") {
                switch row[0].string {
                case "forwarded_batches": f.forwardedBatches = UInt64(row[1].int64 ?? 0)
                case "forwarded_readings": f.forwardedReadings = UInt64(row[1].int64 ?? 0)
                default: break
                }
            }
            return (f, requeued)
        }
        figures = Mutex(loaded.0)
        requeuedAtStart = loaded.1
    }

    /// Set-aside batches of the last run put back in the queue at start.
    public let requeuedAtStart: Int

    public var snapshot: Figures { figures.withLock { $0 } }

    /// Takes a batch into custody; returns once it is committed to disk.
    /// A resend of a batch the spool holds is answered duplicate even when the spool is full.
    public func take(identity: BatchIdentity, digest: UInt64, batch: [UInt8], status: [UInt8], readings: Int, receivedMs: Int64,
                     oldestReadingMs: Int64 = 0, maxBytes: Int64 = .max) throws(SQLiteError) -> Taken {
        let taken = try db.withConnection { c throws(SQLiteError) -> Taken in
            let taken = try c.transaction { () throws(SQLiteError) -> Taken in
                if let held = try c.scalar("SELECT digest FROM spool WHERE gateway_id = ? AND epoch = ? AND sequence = ?",
                                           identity.gatewayID, identity.epoch, identity.sequence) {
                    return held.int64 == Int64(bitPattern: digest) ? .duplicate : .conflict
                }
                // Under the connection's lock: concurrent requests cannot both slip under the quota.
                if snapshot.bytes + Int64(batch.count + status.count) > maxBytes { return .full }
                try c.run("""
                    INSERT INTO spool (gateway_id, epoch, sequence, digest, batch, status, readings, received_ms, oldest_reading_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, identity.gatewayID, identity.epoch, identity.sequence, Int64(bitPattern: digest), batch, status, readings, receivedMs,
                    oldestReadingMs)
                return .stored
            }
            // Counted while the connection is still held, so the next take's quota check sees it.
            if taken == .stored {
                figures.withLock { f in
                    f.batches += 1
                    f.bytes += Int64(batch.count + status.count)
                    f.readings += Int64(readings)
                    if f.oldestReceivedMs == 0 || receivedMs < f.oldestReceivedMs { f.oldestReceivedMs = receivedMs }
                }
            }
            return taken
        }
        return taken
    }

    /// The oldest waiting batches, at most `limit`, the gateways taking turns: each gateway's
    /// batches stay in order, and one with a long backlog does not hold back the others.
    public func oldest(limit: Int) throws(SQLiteError) -> [Entry] {
        try db.withConnection { c throws(SQLiteError) -> [Entry] in
            // Each gateway's oldest few, then ordered by their rank within the gateway and age.
            var entries: [Entry] = []
            try c.forEach("""
                SELECT id, gateway_id, epoch, sequence, batch, status, readings, received_ms, attempts FROM (
                    SELECT *, row_number() OVER (PARTITION BY gateway_id ORDER BY id) AS rank
                    FROM spool WHERE set_aside = 0)
                WHERE rank <= ? ORDER BY rank, id LIMIT ?
                """, [limit, limit]) { row in
                entries.append(Entry(
                    id: row.int64(0), identity: BatchIdentity(gatewayID: row.string(1) ?? "", epoch: row.string(2) ?? "", sequence: UInt64(bitPattern: row.int64(3))),
                    batch: row[4].bytes ?? [], status: row[5].bytes ?? [], readings: Int(row.int64(6)), receivedMs: row.int64(7),
                    attempts: Int(row.int64(8))))
            }
            return entries
        }
    }

    /// What the spool holds of one gateway, besides the batch `excluding` (the one a request
    /// carries): the part of the gateway's backlog that left its buffer but has not reached
    /// the upstream yet.
    public struct Held: Sendable, Equatable {
        public var readings: Int64 = 0
        public var bytes: Int64 = 0
        /// Receive time of the oldest of those readings, on the gateway's clock; 0 if none.
        public var oldestReadingMs: Int64 = 0
        public init(readings: Int64 = 0, bytes: Int64 = 0, oldestReadingMs: Int64 = 0) {
            self.readings = readings
            self.bytes = bytes
            self.oldestReadingMs = oldestReadingMs
        }
    }

    public func held(of gatewayID: String, excluding id: Int64? = nil) throws(SQLiteError) -> Held {
        try db.withConnection { c throws(SQLiteError) -> Held in
            guard let row = try c.query("""
                SELECT coalesce(sum(readings), 0), coalesce(sum(length(batch)), 0), coalesce(min(nullif(oldest_reading_ms, 0)), 0)
                FROM spool WHERE gateway_id = ? AND set_aside = 0 AND id != ?
                """, gatewayID, id ?? -1).first else { return Held() }
            return Held(readings: row[0].int64 ?? 0, bytes: row[1].int64 ?? 0, oldestReadingMs: row[2].int64 ?? 0)
        }
    }

    /// The upstream has it (accepted now or before): out of the spool.
    public func forwarded(_ entry: Entry) throws(SQLiteError) {
        let deleted = try db.withConnection { c throws(SQLiteError) -> Bool in
            try c.transaction { () throws(SQLiteError) -> Bool in
                guard try c.run("DELETE FROM spool WHERE id = ? AND set_aside = 0", entry.id) > 0 else { return false }
                try c.run("""
                    INSERT INTO counters (name, value) VALUES ('forwarded_batches', 1), ('forwarded_readings', ?)
                    ON CONFLICT (name) DO UPDATE SET value = value + excluded.value
                    """, entry.readings)
                return true
            }
        }
        guard deleted else { return }
        try refreshOldest { f in
            f.batches -= 1
            f.bytes -= Int64(entry.batch.count + entry.status.count)
            f.readings -= Int64(entry.readings)
            f.forwardedBatches += 1
            f.forwardedReadings += UInt64(entry.readings)
        }
    }

    /// The upstream refused it for good: kept, out of the queue, with the reason.
    public func setAside(_ entry: Entry, reason: String) throws(SQLiteError) {
        let changed = try db.withConnection { c throws(SQLiteError) -> Int in
            try c.run("UPDATE spool SET set_aside = 1, last_error = ? WHERE id = ? AND set_aside = 0", reason, entry.id)
        }
        guard changed > 0 else { return }
        try refreshOldest { f in
            f.batches -= 1
            f.bytes -= Int64(entry.batch.count + entry.status.count)
            f.readings -= Int64(entry.readings)
            f.setAside += 1
        }
    }

    public func recordAttempt(_ entry: Entry, error: String) throws(SQLiteError) {
        try db.withConnection { c throws(SQLiteError) in
            _ = try c.run("UPDATE spool SET attempts = attempts + 1, last_error = ? WHERE id = ?", error, entry.id)
        }
    }

    private func refreshOldest(_ change: (inout Figures) -> Void) throws(SQLiteError) {
        let oldest = try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT coalesce(min(received_ms), 0) FROM spool WHERE set_aside = 0")?.int64 ?? 0
        }
        figures.withLock { f in
            change(&f)
            f.oldestReceivedMs = oldest
        }
    }

    public func close() { db.close() }
}
