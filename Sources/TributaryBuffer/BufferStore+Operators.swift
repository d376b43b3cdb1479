import Foundation
import TributaryCore
import TributaryRuntime
import TributarySQLite
import TributaryWire

/// What an operator does with what waits for one (`tributary-agent quarantine` and
/// `tributary-agent set-aside`): the quarantined payloads and the set-aside batches, listed,
/// replayed or retried, purged. Every write keeps the counters, on disk and in memory, in the
/// same step. The queries are static, so `BufferReader` (read-only, beside a running agent)
/// shares them.
extension BufferStore {
    // MARK: quarantine

    /// Up to `limit` quarantined payloads with ids above `afterID`, oldest first.
    public func quarantineEntries(afterID: Int64 = 0, limit: Int) throws(SQLiteError) -> [QuarantineEntry] {
        try db.withConnection { c throws(SQLiteError) in try Self.quarantineEntries(c, afterID: afterID, limit: limit) }
    }

    static func quarantineEntries(_ c: SQLiteConnection, afterID: Int64, limit: Int) throws(SQLiteError) -> [QuarantineEntry] {
        var entries: [QuarantineEntry] = []
        try c.forEach("SELECT id, topic, payload, reason, received_ms FROM quarantine WHERE id > ? ORDER BY id LIMIT ?", [afterID, limit]) { row in
            entries.append(QuarantineEntry(id: row.int64(0), topic: row.string(1) ?? "", payload: row[2].bytes ?? [],
                                           reason: row.string(3) ?? "", receivedAtMs: row.int64(4)))
        }
        return entries
    }

    static func quarantineEntry(_ c: SQLiteConnection, id: Int64) throws(SQLiteError) -> QuarantineEntry? {
        try c.query("SELECT id, topic, payload, reason, received_ms FROM quarantine WHERE id = ?", id).first.map { row in
            QuarantineEntry(id: row[0].int64 ?? id, topic: row[1].string ?? "", payload: row[2].bytes ?? [],
                            reason: row[3].string ?? "", receivedAtMs: row[4].int64 ?? 0)
        }
    }

    /// Commits one step of a replay in one transaction: the readings the payloads `released`
    /// decoded into now, appended as if just received (counted as ingested); those payloads
    /// deleted from the quarantine (counted as replayed); `redeliveries` of them were copies of
    /// readings stored already (counted as redeliveries, nothing appended); the payloads that
    /// still fail keep their place with their new reason. A released payload that is no longer
    /// there fails the whole step, so nothing is appended for it twice.
    /// `replayedKeys` (16 bytes each, the redelivery window's saved form) are the payloads this
    /// step stored, kept until a replay ends whole: a replay interrupted after this step (the
    /// tool or the agent killed) must still know them, or a second copy of one of them, left in
    /// the quarantine, would be stored again by the next replay.
    public func commitReplay(readings: [Reading], released: [Int64], redeliveries: Int, stillQuarantined: [(id: Int64, reason: String)],
                             replayedKeys: [UInt8] = [], monotonicNowMs: Int64 = MonotonicClock.nowMs()) throws(SQLiteError) {
        guard !released.isEmpty || !stillQuarantined.isEmpty else { return }
        let lastID = try db.withConnection { c throws(SQLiteError) -> Int64 in
            try c.transaction { () throws(SQLiteError) -> Int64 in
                for id in released {
                    guard try c.run("DELETE FROM quarantine WHERE id = ?", id) == 1 else {
                        throw SQLiteError(code: 1, message: "quarantined payload \(id) is gone (replayed or purged meanwhile); nothing of this step was stored",
                                          path: path, sql: nil)
                    }
                }
                for entry in stillQuarantined {
                    try c.run("UPDATE quarantine SET reason = ? WHERE id = ?", entry.reason, entry.id)
                }
                try Self.insert(c, readings)
                let lastID = c.lastInsertRowID
                try Self.createReplayedKeys(c)
                var offset = 0
                while offset + 16 <= replayedKeys.count {
                    try c.run("INSERT OR IGNORE INTO quarantine_replayed (key) VALUES (?)", Array(replayedKeys[offset..<offset + 16]))
                    offset += 16
                }
                try Self.bump(c, "ingested_total", by: readings.count)
                try Self.bump(c, "redeliveries_total", by: redeliveries)
                try Self.bump(c, "quarantine_replayed_total", by: released.count)
                return lastID
            }
        }
        noteArrival(readings.count, lastID: lastID, monotonicNowMs: monotonicNowMs)
        counters.withLock {
            $0.unsealedReadings += Int64(readings.count)
            $0.ingestedTotal += Int64(readings.count)
            $0.redeliveriesTotal += Int64(redeliveries)
            $0.quarantineHeld -= Int64(released.count)
            $0.quarantineReplayedTotal += Int64(released.count)
            $0.quarantineRevision += 1
        }
    }

    /// What interrupted replays stored (see `commitReplay`), for the next replay to recognise.
    public func replayedKeys() throws(SQLiteError) -> [UInt8] {
        try db.withConnection { c throws(SQLiteError) -> [UInt8] in
            try Self.createReplayedKeys(c)
            var bytes: [UInt8] = []
            try c.forEach("SELECT key FROM quarantine_replayed") { row in bytes += row[0].bytes ?? [] }
            return bytes
        }
    }

    /// A replay ended whole: every copy of what it stored was recognised in it.
    public func clearReplayedKeys() throws(SQLiteError) {
        try db.withConnection { c throws(SQLiteError) in
            try Self.createReplayedKeys(c)
            try c.run("DELETE FROM quarantine_replayed")
        }
    }

    private static func createReplayedKeys(_ c: SQLiteConnection) throws(SQLiteError) {
        try c.execute("CREATE TABLE IF NOT EXISTS quarantine_replayed (key BLOB PRIMARY KEY) WITHOUT ROWID")
    }

    /// Deletes the quarantined payloads received before `receivedBeforeMs` whose topic
    /// `topic` matches (all when nil); counted as purged. Returns how many.
    public func purgeQuarantine(receivedBeforeMs: Int64, topic: TopicFilter? = nil) throws(SQLiteError) -> Int {
        let purged = try db.withConnection { c throws(SQLiteError) -> Int in
            try c.transaction { () throws(SQLiteError) -> Int in
                var ids: [Int64] = []
                try c.forEach("SELECT id, topic FROM quarantine WHERE received_ms < ? ORDER BY id", [receivedBeforeMs]) { row in
                    if topic?.matches(row.string(1) ?? "") ?? true { ids.append(row.int64(0)) }
                }
                for id in ids { try c.run("DELETE FROM quarantine WHERE id = ?", id) }
                try Self.bump(c, "quarantine_purged_total", by: ids.count)
                return ids.count
            }
        }
        counters.withLock {
            $0.quarantineHeld -= Int64(purged)
            $0.quarantinePurgedTotal += Int64(purged)
            if purged > 0 { $0.quarantineRevision += 1 }
        }
        return purged
    }

    // MARK: set-aside batches

    static func setAsideBatches(_ c: SQLiteConnection, sequence: UInt64? = nil) throws(SQLiteError) -> [SetAsideBatch] {
        var batches: [SetAsideBatch] = []
        let filter = sequence.map { " AND sequence = \(Int64(bitPattern: $0))" } ?? ""
        try c.forEach("""
            SELECT sequence, epoch, reading_count, oldest_received_ms, sealed_at_ms, attempts, last_error, payload
            FROM batches WHERE set_aside = 1\(filter) ORDER BY sequence
            """) { row in
            batches.append(SetAsideBatch(sequence: UInt64(row.int64(0)), epoch: row.string(1) ?? "", readingCount: Int(row.int64(2)),
                                         oldestReceivedMs: row.int64(3), sealedAtMs: row.int64(4), attempts: Int(row.int64(5)),
                                         lastError: row.string(6) ?? "", payload: row[7].bytes ?? []))
        }
        return batches
    }

    /// The set-aside batches, oldest first (with their bytes).
    public func setAsideBatches() throws(SQLiteError) -> [SetAsideBatch] {
        try db.withConnection { c throws(SQLiteError) in try Self.setAsideBatches(c) }
    }

    /// Puts set-aside batch `sequence` back in the send queue, as it is (same identity, same
    /// bytes: if the aggregator has it after all, it answers duplicate), with its attempts
    /// reset. Returns its reading count, or nil when no batch of that sequence is set aside.
    public func retrySetAside(_ sequence: UInt64) throws(SQLiteError) -> Int? {
        let count = try db.withConnection { c throws(SQLiteError) -> Int64? in
            try c.transaction { () throws(SQLiteError) -> Int64? in
                // A sequence no batch can have (past Int64) is simply not set aside.
                guard let sequence = Int64(exactly: sequence),
                      let count = try c.scalar("SELECT reading_count FROM batches WHERE sequence = ? AND set_aside = 1", sequence)?.int64 else {
                    return nil
                }
                try c.run("UPDATE batches SET set_aside = 0, attempts = 0, last_error = NULL WHERE sequence = ?", sequence)
                try Self.bump(c, "set_aside_retried_total", by: 1)
                return count
            }
        }
        guard let count else { return nil }
        counters.withLock {
            $0.setAsideBatches -= 1
            $0.sealedBatches += 1
            $0.sealedReadings += count
        }
        return Int(count)
    }

    /// Deletes set-aside batch `sequence`: its readings are counted as dropped (they never reach
    /// the sink). Returns its reading count, or nil when no batch of that sequence is set aside.
    public func purgeSetAside(_ sequence: UInt64) throws(SQLiteError) -> Int? {
        let count = try db.withConnection { c throws(SQLiteError) -> Int64? in
            try c.transaction { () throws(SQLiteError) -> Int64? in
                // A sequence no batch can have (past Int64) is simply not set aside.
                guard let sequence = Int64(exactly: sequence),
                      let count = try c.scalar("SELECT reading_count FROM batches WHERE sequence = ? AND set_aside = 1", sequence)?.int64 else {
                    return nil
                }
                try c.run("DELETE FROM batches WHERE sequence = ?", sequence)
                try Self.bump(c, "dropped_total", by: Int(count))
                return count
            }
        }
        guard let count else { return nil }
        counters.withLock {
            $0.setAsideBatches -= 1
            $0.droppedTotal += count
        }
        return Int(count)
    }
}

/// A quarantined payload as stored, with its row id (what `quarantine show ID` takes).
public struct QuarantineEntry: Sendable, Equatable {
    public var id: Int64
    public var topic: String
    public var payload: [UInt8]
    public var reason: String
    public var receivedAtMs: Int64

    public init(id: Int64, topic: String, payload: [UInt8], reason: String, receivedAtMs: Int64) {
        self.id = id
        self.topic = topic
        self.payload = payload
        self.reason = reason
        self.receivedAtMs = receivedAtMs
    }
}

/// A batch the aggregator refused for good, kept on disk out of the send queue.
public struct SetAsideBatch: Sendable {
    public var sequence: UInt64
    public var epoch: String
    public var readingCount: Int
    public var oldestReceivedMs: Int64
    public var sealedAtMs: Int64
    public var attempts: Int
    /// The aggregator's answer when it refused the batch.
    public var lastError: String
    /// The serialized `tributary.v1.Batch`, as it was sent.
    public var payload: [UInt8]

    /// Its readings, decoded from the stored bytes.
    public func readings() throws -> [Reading] {
        try BatchCodec.decode(try Tributary_V1_Batch(serializedBytes: payload))
    }
}
