import TributaryCore
import Synchronization
import TributarySQLite

/// The embedded default sink: one SQLite file holding the readings and the dedup ledger,
/// both written in the same transaction. The schema is documented in the README.
public final class SQLiteSink: Sink {
    public let path: String
    private let db: SQLiteDatabase
    private let stats = Mutex(SinkWriteStats())

    public var description: String { "sqlite:\(path)" }

    public init(path: String) throws(SQLiteError) {
        self.path = path
        db = try SQLiteDatabase(path: path)
        try db.withConnection { c throws(SQLiteError) in
            try c.execute("PRAGMA journal_mode = WAL")
            try c.execute("PRAGMA synchronous = NORMAL")
            try c.execute(Self.schema)
        }
    }

    static let schema = """
        CREATE TABLE IF NOT EXISTS readings (
            gateway_id  TEXT    NOT NULL,
            sensor_id   TEXT    NOT NULL,
            metric      TEXT    NOT NULL,
            time_ms     INTEGER NOT NULL,   -- event time, ms since the Unix epoch
            received_ms INTEGER NOT NULL,   -- when the agent received it
            value       REAL,               -- numeric readings (number and integer)
            value_int   INTEGER,            -- integer and boolean (0/1) readings, exact
            value_text  TEXT,               -- text readings
            value_type  TEXT    NOT NULL,   -- number | integer | boolean | text
            unit        TEXT,
            labels      TEXT,               -- JSON object, or NULL
            topic       TEXT    NOT NULL,
            batch_gateway_id TEXT NOT NULL, -- the identity of the batch that carried it
            batch_epoch TEXT    NOT NULL,
            batch_seq   INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS readings_by_series ON readings (gateway_id, sensor_id, metric, time_ms);
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

    /// The file was opened and its tables created in `init`.
    public func prepare() async throws(SinkError) {}

    /// The file is open for as long as the aggregator runs; a failing disk shows in writes.
    public func readinessProblem() async -> String? { nil }

    public func write(_ batch: IncomingBatch) async throws(SinkError) -> SinkWriteResult {
        let result: SinkWriteResult
        do {
            result = try await db.perform { c in try Self.write(batch, c) }
        } catch {
            throw SinkError(.unavailable, "SQLite sink \(path): \(error)")
        }
        if result == .accepted {
            stats.withLock { s in
                s.writes += 1
                s.batches += 1
                s.readings += batch.readings.count
                s.largestWriteBatches = 1
            }
        }
        return result
    }

    public var writeStats: SinkWriteStats { stats.withLock { $0 } }

    private static func write(_ batch: IncomingBatch, _ c: SQLiteConnection) throws(SQLiteError) -> SinkWriteResult {
        let id = batch.identity
        return try c.transaction { () throws(SQLiteError) -> SinkWriteResult in
            if let digest = try c.scalar("SELECT digest FROM batch_ledger WHERE gateway_id = ? AND epoch = ? AND sequence = ?",
                                         id.gatewayID, id.epoch, Int64(bitPattern: id.sequence))?.int64 {
                return digest == Int64(bitPattern: batch.digest) ? .duplicate : .conflict
            }
            try c.runForEach("""
                INSERT INTO readings (gateway_id, sensor_id, metric, time_ms, received_ms, value, value_int,
                    value_text, value_type, unit, labels, topic, batch_gateway_id, batch_epoch, batch_seq)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, batch.readings) { row, r in
                row.bind(r.gatewayID)
                row.bind(r.sensorID)
                row.bind(r.metric)
                row.bind(r.timeMs)
                row.bind(r.receivedAtMs)
                row.bind(r.value.numericValue)
                row.bind(r.value.exactIntegerValue)
                row.bind(r.value.textValue)
                row.bind(r.value.typeName)
                row.bind(r.unit)
                row.bind(LabelsJSON.encode(r.labels))
                row.bind(r.topic)
                row.bind(id.gatewayID)
                row.bind(id.epoch)
                row.bind(Int64(bitPattern: id.sequence))
            }
            try c.run("INSERT INTO batch_ledger VALUES (?, ?, ?, ?, ?, ?)",
                      id.gatewayID, id.epoch, Int64(bitPattern: id.sequence), Int64(bitPattern: batch.digest),
                      batch.readings.count, batch.receivedAtMs)
            return .accepted
        }
    }

    public func close() async {
        db.close()
    }
}
