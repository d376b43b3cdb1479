import TributarySQLite

extension SQLiteSink {
    /// Reads a sink file `SQLiteSink` wrote, read-only (beside a running aggregator): for tools
    /// such as `tributary-sim verify`, so none keeps its own SQL for the sink's tables.
    public final class Reader {
        private let db: SQLiteDatabase

        public init(path: String) throws(SQLiteError) {
            db = try SQLiteDatabase(path: path, readOnly: true)
        }

        deinit { db.close() }

        /// Every stored reading, one at a time (a large sink is never held in memory whole).
        public func forEachReading(_ body: (StoredReading) -> Void) throws(SQLiteError) {
            try db.withConnection { c throws(SQLiteError) in
                try c.forEach("SELECT \(StoredReading.columns) FROM readings") { row in
                    body(StoredReading(gatewayID: row.string(0) ?? "", sensorID: row.string(1) ?? "", metric: row.string(2) ?? "",
                                       timeMs: row.int64(3), valueType: row.string(4), value: row.double(5), valueInt: row.int64(6),
                                       valueText: row.string(7)))
                }
            }
        }
    }
}
