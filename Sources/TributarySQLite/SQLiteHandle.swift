import CSQLite

/// Owns the raw `sqlite3*` and its cached prepared statements.
///
/// `@unchecked Sendable` is safe because the handle is only ever touched while
/// `SQLiteDatabase`'s lock is held, so at most one thread uses the connection at a time.
final class SQLiteHandle: @unchecked Sendable {
    let path: String
    private(set) var pointer: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    init(path: String, readOnly: Bool) throws(SQLiteError) {
        self.path = path
        var db: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        if !readOnly { PrivateFiles.prepareDatabase(path) }
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(db)
            throw SQLiteError(code: rc, message: message, path: path, sql: nil)
        }
        sqlite3_extended_result_codes(db, 1)
        pointer = db
    }

    func error(_ rc: Int32, sql: String?, fileID: String = #fileID, line: Int = #line) -> SQLiteError {
        let message = pointer.map { String(cString: sqlite3_errmsg($0)) } ?? "database is closed"
        return SQLiteError(code: rc, extendedCode: rc, message: message, path: path, sql: sql, fileID: fileID, line: line)
    }

    /// A cached prepared statement for `sql`, reset and with bindings cleared.
    func statement(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        guard let pointer else { throw SQLiteError(code: SQLITE_MISUSE, message: "database is closed", path: path, sql: sql) }
        if let cached = statements[sql] {
            sqlite3_reset(cached)
            sqlite3_clear_bindings(cached)
            return cached
        }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(pointer, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql: sql) }
        statements[sql] = stmt
        return stmt
    }

    func close() {
        for stmt in statements.values { sqlite3_finalize(stmt) }
        statements.removeAll()
        if let pointer { sqlite3_close_v2(pointer) }
        pointer = nil
    }

    deinit {
        assert(pointer == nil, "SQLiteHandle for \(path) was not closed")
        close()
    }
}
