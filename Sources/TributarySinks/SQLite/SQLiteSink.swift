import TributaryAdminAPI
import TributaryCore
import Synchronization
import TributarySQLite

/// The embedded default sink: one SQLite file holding the readings and the dedup ledger,
/// both written in the same transaction. The schema is documented in the README.
public final class SQLiteSink: Sink {
    public let path: String
    private let db: SQLiteDatabase
    /// Batches that arrive while a transaction is under way wait and go in the next one,
    /// together: one commit (and its share of WAL checkpoints) for many batches. Without it,
    /// commits and checkpoints were a fifth of the aggregator's CPU under 100 gateways.
    private let writer: CoalescingWriter

    public var description: String { "sqlite:\(path)" }

    /// `maxGroupBatches` and `maxGroupReadings` bound one transaction's batches and (beyond its
    /// first batch) readings.
    public init(path: String, maxGroupBatches: Int = 64, maxGroupReadings: Int = 50_000) throws(SQLiteError) {
        self.path = path
        let db = try SQLiteDatabase(path: path)
        try db.withConnection { c throws(SQLiteError) in
            try c.execute("PRAGMA journal_mode = WAL")
            // A batch is acknowledged once its transaction commits, and its gateway then deletes
            // it: the commit must be on the disk, not in the page cache (with NORMAL, WAL mode
            // syncs only at checkpoints, and a power cut lost up to 4 MB of acknowledged
            // readings: attack round 11). One fsync per group, which coalescing keeps few.
            try c.execute("PRAGMA synchronous = FULL")
            try c.execute("PRAGMA cache_size = -16384")
            try Self.migrate(c)
        }
        self.db = db
        // Series already in the file, by key: with it a batch's readings need no statement for
        // their series (an insert and a select on a six-column index each, which made version 2
        // write at 0.4 times version 1's rate). Filled only after a commit, so a rolled-back
        // series is never remembered; bounded, and emptied when full.
        let knownSeries = KnownSeries(limit: 100_000)
        writer = CoalescingWriter(maxBatches: maxGroupBatches, maxReadings: maxGroupReadings) { group in
            await Self.write(group, db: db, path: path, knownSeries: knownSeries)
        }
    }

    /// Version 2 keeps each series' description (ids, topic, unit, labels) and each batch's
    /// identity once, in `series` and `batches`, and a reading row points at them: a request
    /// can no longer make the sink store its long strings once per reading (a 1 KB request
    /// grew a version-1 file by 600 MB). `readings` is a view with the version-1 columns, so
    /// queries do not change. A version-1 file keeps its rows in `readings_v1`, which the view
    /// includes.
    static let schemaVersion: Int64 = 2

    private static func migrate(_ c: SQLiteConnection) throws(SQLiteError) {
        let version = try c.scalar("PRAGMA user_version")?.int64 ?? 0
        guard version < schemaVersion else { return }
        try c.transaction { () throws(SQLiteError) in
            let oldTable = try c.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'readings'")?.int64 ?? 0
            if oldTable > 0 { try c.execute("ALTER TABLE readings RENAME TO readings_v1") }
            try c.execute(schema)
            let version1Rows = try c.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'readings_v1'")?.int64 ?? 0
            try c.execute(view(withVersion1Rows: version1Rows > 0))
            try c.execute("PRAGMA user_version = \(schemaVersion)")
        }
    }

    static let schema = """
        -- What a series is: stored once, whatever the number of its readings.
        CREATE TABLE IF NOT EXISTS series (
            id         INTEGER PRIMARY KEY,
            gateway_id TEXT NOT NULL,
            sensor_id  TEXT NOT NULL,
            metric     TEXT NOT NULL,
            topic      TEXT NOT NULL,
            unit       TEXT NOT NULL,       -- '' for none
            labels     TEXT NOT NULL,       -- JSON object, '' for none
            UNIQUE (gateway_id, sensor_id, metric, topic, unit, labels)
        );
        -- The batches written, one row each: the identity their readings came in.
        CREATE TABLE IF NOT EXISTS batches (
            id         INTEGER PRIMARY KEY,
            gateway_id TEXT    NOT NULL,
            epoch      TEXT    NOT NULL,
            sequence   INTEGER NOT NULL,
            UNIQUE (gateway_id, epoch, sequence)
        );
        CREATE TABLE IF NOT EXISTS reading_rows (
            series_id   INTEGER NOT NULL,   -- series.id
            batch_id    INTEGER NOT NULL,   -- batches.id
            time_ms     INTEGER NOT NULL,   -- event time, ms since the Unix epoch
            received_ms INTEGER NOT NULL,   -- when the agent received it
            value       REAL,               -- numeric readings (number and integer)
            value_int   INTEGER,            -- integer and boolean (0/1) readings, exact
            value_text  TEXT,               -- text readings
            value_type  TEXT    NOT NULL    -- number | integer | boolean | text
        );
        CREATE INDEX IF NOT EXISTS reading_rows_by_series ON reading_rows (series_id, time_ms);
        -- The dedup ledger: one row per batch identity ever written.
        CREATE TABLE IF NOT EXISTS batch_ledger (
            gateway_id    TEXT    NOT NULL,
            epoch         TEXT    NOT NULL,
            sequence      INTEGER NOT NULL,
            digest        INTEGER NOT NULL,
            reading_count INTEGER NOT NULL,
            written_ms    INTEGER NOT NULL,
            PRIMARY KEY (gateway_id, epoch, sequence)
        ) WITHOUT ROWID;
        """

    /// Every reading with its series and batch, in the columns of version 1.
    static func view(withVersion1Rows: Bool) -> String {
        let current = """
            SELECT s.gateway_id, s.sensor_id, s.metric, r.time_ms, r.received_ms, r.value, r.value_int, r.value_text,
                   r.value_type, nullif(s.unit, '') AS unit, nullif(s.labels, '') AS labels, s.topic,
                   b.gateway_id AS batch_gateway_id, b.epoch AS batch_epoch, b.sequence AS batch_seq
            FROM reading_rows r JOIN series s ON s.id = r.series_id JOIN batches b ON b.id = r.batch_id
            """
        let old = """
            SELECT gateway_id, sensor_id, metric, time_ms, received_ms, value, value_int, value_text, value_type, unit, labels,
                   topic, batch_gateway_id, batch_epoch, batch_seq FROM readings_v1
            """
        return "DROP VIEW IF EXISTS readings; CREATE VIEW readings AS " + current + (withVersion1Rows ? " UNION ALL " + old : "") + ";"
    }

    /// The file was opened and its tables created in `init`.
    public func prepare() async throws(SinkError) {}

    /// The file is open for as long as the aggregator runs; a failing disk shows in writes.
    public func readinessProblem() async -> String? { nil }

    public func write(_ batch: IncomingBatch) async throws(SinkError) -> SinkWriteResult {
        try await writer.write(batch).get()
    }

    public var writeStats: SinkWriteStats { writer.stats }

    /// Writes a group in one transaction. When that fails and the group has several batches, each
    /// is written alone in its own, so a batch SQLite cannot take fails only itself.
    private static func write(_ group: [IncomingBatch], db: SQLiteDatabase, path: String,
                              knownSeries: KnownSeries) async -> [CoalescingWriter.Outcome] {
        do {
            return try await db.perform { c in
                var added: [SeriesIdentity: Int64] = [:]
                let results = try c.transaction { () throws(SQLiteError) -> [SinkWriteResult] in
                    try group.map { batch throws(SQLiteError) in try write(batch, c, knownSeries: knownSeries, added: &added) }
                }
                knownSeries.remember(added)
                return results.map { .success($0) }
            }
        } catch {
            guard group.count > 1 else { return [.failure(SinkError(.unavailable, "SQLite sink \(path): \(error)"))] }
            var outcomes: [CoalescingWriter.Outcome] = []
            for batch in group { outcomes += await write([batch], db: db, path: path, knownSeries: knownSeries) }
            return outcomes
        }
    }

    /// Writes one batch, in the caller's transaction; returns what became of it and notes in
    /// `added` the series it added (to remember once committed). A second copy of an identity
    /// in the same group finds the first's ledger row.
    private static func write(_ batch: IncomingBatch, _ c: SQLiteConnection, knownSeries: KnownSeries,
                              added: inout [SeriesIdentity: Int64]) throws(SQLiteError) -> SinkWriteResult {
        let id = batch.identity
        if let digest = try c.scalar("SELECT digest FROM batch_ledger WHERE gateway_id = ? AND epoch = ? AND sequence = ?",
                                     id.gatewayID, id.epoch, Int64(bitPattern: id.sequence))?.int64 {
            return digest == Int64(bitPattern: batch.digest) ? .duplicate : .conflict
        }
        try c.run("INSERT INTO batches (gateway_id, epoch, sequence) VALUES (?, ?, ?)", id.gatewayID, id.epoch, Int64(bitPattern: id.sequence))
        let batchID = c.lastInsertRowID
        // Each distinct series once: looked up (or added) for the first of its readings. Its
        // id is noted per reading on the way.
        var seriesIDs: [SeriesIdentity: Int64] = [:]
        var seriesOfReading: [Int64] = []
        seriesOfReading.reserveCapacity(batch.readings.count)
        for (index, r) in batch.readings.enumerated() {
            // A series' readings come one after the other: most take the previous one's id.
            if index > 0, SeriesIdentity.surelySame(r, batch.readings[index - 1]) {
                seriesOfReading.append(seriesOfReading[index - 1])
                continue
            }
            let key = SeriesIdentity(r)
            if let known = seriesIDs[key] ?? added[key] ?? knownSeries.id(of: key) {
                seriesIDs[key] = known
                seriesOfReading.append(known)
                continue
            }
            // The labels' JSON only for a series not seen yet: the same labels, the same JSON.
            let labels = LabelsJSON.encode(r.labels) ?? ""
            try c.run("INSERT INTO series (gateway_id, sensor_id, metric, topic, unit, labels) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                      key.gateway.value, key.sensor.value, key.metric.value, key.topic.value, key.unit.value, labels)
            guard let existing = try c.scalar("""
                SELECT id FROM series WHERE gateway_id = ? AND sensor_id = ? AND metric = ? AND topic = ? AND unit = ? AND labels = ?
                """, key.gateway.value, key.sensor.value, key.metric.value, key.topic.value, key.unit.value, labels)?.int64 else {
                throw SQLiteError(code: 1, message: "series not found after insert", path: "", sql: nil)
            }
            seriesIDs[key] = existing
            added[key] = existing
            seriesOfReading.append(existing)
        }
        let readings = batch.readings
        try c.runForEach("""
            INSERT INTO reading_rows (series_id, batch_id, time_ms, received_ms, value, value_int, value_text, value_type)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """, count: readings.count) { row, index in
            row.bind(seriesOfReading[index])
            row.bind(batchID)
            row.bind(readings[index].timeMs)
            row.bind(readings[index].receivedAtMs)
            let value = readings[index].value
            row.bind(value.numericValue)
            row.bind(value.exactIntegerValue)
            row.bind(value.textValue)
            row.bind(value.typeName)
        }
        try c.run("INSERT INTO batch_ledger VALUES (?, ?, ?, ?, ?, ?)",
                  id.gatewayID, id.epoch, Int64(bitPattern: id.sequence), Int64(bitPattern: batch.digest),
                  batch.readings.count, batch.receivedAtMs)
        return .accepted
    }

    public func close() async {
        db.close()
    }
}

/// Series ids already committed to the file, by key; emptied when `limit` would be passed.
final class KnownSeries: Sendable {
    private let ids = Mutex<[SeriesIdentity: Int64]>([:])
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    func id(of key: SeriesIdentity) -> Int64? { ids.withLock { $0[key] } }

    func remember(_ added: [SeriesIdentity: Int64]) {
        guard !added.isEmpty else { return }
        ids.withLock { known in
            if known.count + added.count > limit { known.removeAll(keepingCapacity: true) }
            known.merge(added) { _, new in new }
        }
    }
}
