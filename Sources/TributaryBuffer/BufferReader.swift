import TributarySQLite

/// Reads a buffer file, read-only, beside the agent that writes it (WAL lets both run): what
/// tools and benchmarks need of the buffer's tables, so none of them keeps its own SQL for them.
public final class BufferReader {
    /// The running totals the buffer keeps (its `counters` table).
    public enum Total: String, Sendable, CaseIterable {
        case ingested = "ingested_total"
        case acknowledged = "acknowledged_total"
        case quarantined = "quarantined_total"
        case dropped = "dropped_total"
        case redeliveries = "redeliveries_total"
        case quarantineReplayed = "quarantine_replayed_total"
        case quarantinePurged = "quarantine_purged_total"
    }

    private let db: SQLiteDatabase

    public init(path: String) throws(SQLiteError) {
        db = try SQLiteDatabase(path: path, readOnly: true)
    }

    deinit { db.close() }

    /// One running total; 0 before anything was counted.
    public func total(_ total: Total) throws(SQLiteError) -> Int64 {
        try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT value FROM counters WHERE name = ?", total.rawValue)?.int64 ?? 0
        }
    }

    /// How many quarantined payloads the buffer holds, per topic.
    public func quarantinedCountsByTopic() throws(SQLiteError) -> [String: Int] {
        var held: [String: Int] = [:]
        try db.withConnection { c throws(SQLiteError) in
            try c.forEach("SELECT topic, count(*) FROM quarantine GROUP BY topic") { row in
                held[row.string(0) ?? "", default: 0] += Int(row.int64(1))
            }
        }
        return held
    }

    /// Up to `limit` quarantined payloads with ids above `afterID`, oldest first.
    public func quarantineEntries(afterID: Int64 = 0, limit: Int) throws(SQLiteError) -> [QuarantineEntry] {
        try db.withConnection { c throws(SQLiteError) in try BufferStore.quarantineEntries(c, afterID: afterID, limit: limit) }
    }

    /// Quarantined payload `id`, or nil when the quarantine holds none of that id.
    public func quarantineEntry(id: Int64) throws(SQLiteError) -> QuarantineEntry? {
        try db.withConnection { c throws(SQLiteError) in try BufferStore.quarantineEntry(c, id: id) }
    }

    /// How many payloads the quarantine holds.
    public func quarantineCount() throws(SQLiteError) -> Int64 {
        try db.withConnection { c throws(SQLiteError) in try c.scalar("SELECT count(*) FROM quarantine")?.int64 ?? 0 }
    }

    /// The set-aside batches, oldest first, or the one of `sequence`.
    public func setAsideBatches(sequence: UInt64? = nil) throws(SQLiteError) -> [SetAsideBatch] {
        try db.withConnection { c throws(SQLiteError) in try BufferStore.setAsideBatches(c, sequence: sequence) }
    }

    /// The kinds of reason payloads were quarantined for, most frequent first (as the agent's
    /// status reports them; see `BufferStore.quarantineKinds`).
    public func quarantineKinds(limit: Int = 5) throws(SQLiteError) -> [QuarantineKind] {
        try db.withConnection { c throws(SQLiteError) in try BufferStore.quarantineKinds(c, limit: limit) }
    }
}
