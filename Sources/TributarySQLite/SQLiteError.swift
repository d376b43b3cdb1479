import CSQLite

/// A failed SQLite call, with the database file and the SQL involved.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// SQLite's primary result code (SQLITE_BUSY, SQLITE_FULL, SQLITE_CORRUPT...).
    public let code: Int32
    public let extendedCode: Int32
    public let message: String
    public let path: String
    public let sql: String?
    public let fileID: String
    public let line: Int

    public init(code: Int32, extendedCode: Int32? = nil, message: String, path: String, sql: String?, fileID: String = #fileID, line: Int = #line) {
        self.code = code & 0xFF
        self.extendedCode = extendedCode ?? code
        self.message = message
        self.path = path
        self.sql = sql
        self.fileID = fileID
        self.line = line
    }

    public var isDiskFull: Bool { code == SQLITE_FULL }
    public var isBusy: Bool { code == SQLITE_BUSY || code == SQLITE_LOCKED }
    /// The file is not a database, or is damaged.
    public var isCorrupt: Bool { code == SQLITE_CORRUPT || code == SQLITE_NOTADB }

    public var description: String {
        let codeName = String(cString: sqlite3_errstr(code))
        var text = "SQLite error \(code) (\(codeName)) on \(path): \(message)"
        if let sql { text += " [SQL: \(sql.prefix(200))]" }
        return text
    }
}
