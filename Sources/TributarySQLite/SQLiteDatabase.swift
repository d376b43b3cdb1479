import CSQLite
import NIOPosix
import Synchronization

/// One SQLite connection, safe to share: every use takes a lock, so calls are serialized.
///
/// Calls block. From async code use `perform`, which runs the work on NIO's blocking thread
/// pool, never on Swift's cooperative pool.
public final class SQLiteDatabase: Sendable {
    public let path: String
    private let handle: Mutex<SQLiteHandle?>

    /// Opens (and creates, unless `readOnly`) the database file at `path`.
    public init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        self.path = path
        let opened = try SQLiteHandle(path: path, readOnly: readOnly)
        handle = Mutex(opened)
        try withConnection { db throws(SQLiteError) in
            // Wait for a competing writer (another process reading the sink, say) instead of failing.
            _ = try db.execute("PRAGMA busy_timeout = 5000")
        }
    }

    /// Runs `body` with exclusive use of the connection, on the calling thread.
    @discardableResult
    public func withConnection<T>(_ body: (SQLiteConnection) throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        try handle.withLock { handle throws(SQLiteError) -> T in
            guard let handle else {
                throw SQLiteError(code: SQLITE_MISUSE, message: "database is closed", path: path, sql: nil)
            }
            return try body(SQLiteConnection(handle: handle))
        }
    }

    /// Runs `body` on a thread of the blocking pool; for async callers.
    @discardableResult
    public func perform<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive {
            try self.withConnection { (db) throws(SQLiteError) -> Result<T, any Error> in
                Result { try body(db) }
            }.get()
        }
    }

    public func close() {
        handle.withLock { handle in
            handle?.close()
            handle = nil
        }
    }

    deinit {
        close()
    }
}

/// The connection while its lock is held; only valid inside `withConnection`.
public struct SQLiteConnection {
    let handle: SQLiteHandle

    init(handle: SQLiteHandle) { self.handle = handle }

    public var path: String { handle.path }

    /// Runs one or more statements without results (DDL, PRAGMAs).
    @discardableResult
    public func execute(_ sql: String) throws(SQLiteError) -> Int {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle.pointer, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? "failed"
            sqlite3_free(errorMessage)
            throw SQLiteError(code: rc, message: message, path: handle.path, sql: sql)
        }
        return Int(sqlite3_changes(handle.pointer))
    }

    /// Runs one statement with bindings; returns the number of rows changed.
    @discardableResult
    public func run(_ sql: String, _ bindings: any SQLiteBindable...) throws(SQLiteError) -> Int {
        try run(sql, bindings)
    }

    @discardableResult
    public func run(_ sql: String, _ bindings: [any SQLiteBindable]) throws(SQLiteError) -> Int {
        let stmt = try handle.statement(sql)
        try bind(stmt, bindings, sql: sql)
        var rc = sqlite3_step(stmt)
        while rc == SQLITE_ROW { rc = sqlite3_step(stmt) }
        sqlite3_reset(stmt)
        guard rc == SQLITE_DONE else { throw handle.error(rc, sql: sql) }
        return Int(sqlite3_changes(handle.pointer))
    }

    /// Runs one statement once per element, prepared and looked up once, each row's values
    /// bound in order by `bind` straight into SQLite: for bulk inserts, where `run`'s lookup
    /// and array of bindings per row cost more than SQLite itself.
    public func runForEach<S: Sequence>(_ sql: String, _ elements: S, bind: (inout SQLiteBinder, S.Element) -> Void) throws(SQLiteError) {
        let stmt = try handle.statement(sql)
        defer { sqlite3_reset(stmt) }
        for element in elements { try insertRow(stmt, sql: sql) { bind(&$0, element) } }
    }

    /// `runForEach` for rows 0..<count, bound by their index. Not generic, so no type metadata
    /// is looked up per row (the generic one, unspecialized across modules, spent 3% of the
    /// aggregator's CPU in the runtime's metadata caches), and the caller binds fields straight
    /// from its arrays instead of copying each element (a reading's five strings retained and
    /// released per row).
    public func runForEach(_ sql: String, count: Int, bind: (inout SQLiteBinder, Int) -> Void) throws(SQLiteError) {
        let stmt = try handle.statement(sql)
        defer { sqlite3_reset(stmt) }
        for index in 0..<count { try insertRow(stmt, sql: sql) { bind(&$0, index) } }
    }

    /// Binds one row of a prepared statement that returns none, steps it and resets it.
    private func insertRow(_ stmt: OpaquePointer, sql: String, bind: (inout SQLiteBinder) -> Void) throws(SQLiteError) {
        var binder = SQLiteBinder(statement: stmt)
        bind(&binder)
        if let rc = binder.failure { throw handle.error(rc, sql: sql) }
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_DONE else { throw handle.error(rc, sql: sql) }
        sqlite3_reset(stmt)
    }

    /// Runs a query and calls `row` for each result row.
    public func forEach(_ sql: String, _ bindings: [any SQLiteBindable] = [], row: (SQLiteRow) throws(SQLiteError) -> Void) throws(SQLiteError) {
        let stmt = try handle.statement(sql)
        try bind(stmt, bindings, sql: sql)
        defer { sqlite3_reset(stmt) }
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw handle.error(rc, sql: sql) }
            try row(SQLiteRow(statement: stmt))
        }
    }

    /// Runs a query and returns every row as values.
    public func query(_ sql: String, _ bindings: any SQLiteBindable...) throws(SQLiteError) -> [[SQLiteValue]] {
        var rows: [[SQLiteValue]] = []
        try forEach(sql, bindings) { row in rows.append(row.values) }
        return rows
    }

    /// The first column of the first row, or nil when there is no row.
    public func scalar(_ sql: String, _ bindings: any SQLiteBindable...) throws(SQLiteError) -> SQLiteValue? {
        var value: SQLiteValue?
        try forEach(sql, bindings) { row in if value == nil { value = row[0] } }
        return value
    }

    /// Runs `body` in a transaction (BEGIN IMMEDIATE, so the write lock is taken up front);
    /// commits when it returns, rolls back when it throws.
    public func transaction<T>(_ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            _ = try? execute("ROLLBACK")  // the original error is the one worth reporting
            throw error
        }
    }

    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle.pointer) }

    private func bind(_ stmt: OpaquePointer, _ bindings: [any SQLiteBindable], sql: String) throws(SQLiteError) {
        var binder = SQLiteBinder(statement: stmt)
        for binding in bindings { binder.bind(binding.sqliteValue) }
        if let rc = binder.failure { throw handle.error(rc, sql: sql) }
    }
}

/// Binds one row's values in parameter order (see `runForEach`).
public struct SQLiteBinder {
    let statement: OpaquePointer
    private var index: Int32 = 1
    /// The first error from SQLite, reported when the row is stepped.
    var failure: Int32?

    init(statement: OpaquePointer) { self.statement = statement }

    private mutating func check(_ rc: Int32) {
        if rc != SQLITE_OK, failure == nil { failure = rc }
        index += 1
    }

    /// The one place a value meets sqlite3_bind_*: `run`'s bindings and the typed binds below.
    public mutating func bind(_ value: SQLiteValue) {
        let rc: Int32
        switch value {
        case .null: rc = sqlite3_bind_null(statement, index)
        case .integer(let i): rc = sqlite3_bind_int64(statement, index, i)
        case .real(let d): rc = sqlite3_bind_double(statement, index, d)
        // With its byte count: text may hold U+0000 (JSON's "\u0000"), which a C string would end at.
        case .text(var s): rc = s.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { tributary_sqlite3_bind_text_transient(statement, index, $0.baseAddress, Int32(utf8.count)) }
        }
        case .blob(let b):
            rc = b.withUnsafeBytes { tributary_sqlite3_bind_blob_transient(statement, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32($0.count)) }
        }
        check(rc)
    }

    public mutating func bind(_ value: Int64?) { bind(value.map(SQLiteValue.integer) ?? .null) }

    public mutating func bind(_ value: Int) { bind(.integer(Int64(value))) }

    public mutating func bind(_ value: Double?) { bind(value.map(SQLiteValue.real) ?? .null) }

    public mutating func bind(_ value: String?) { bind(value.map(SQLiteValue.text) ?? .null) }
}

/// The current row of a query; only valid inside the `forEach` callback.
public struct SQLiteRow {
    let statement: OpaquePointer

    init(statement: OpaquePointer) { self.statement = statement }

    public var count: Int { Int(sqlite3_column_count(statement)) }

    public subscript(_ column: Int) -> SQLiteValue {
        let index = Int32(column)
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT: return .text(text(index) ?? "")
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let pointer = sqlite3_column_blob(statement, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: pointer, count: count)))
        default: return .null
        }
    }

    public func int64(_ column: Int) -> Int64 { sqlite3_column_int64(statement, Int32(column)) }
    public func double(_ column: Int) -> Double { sqlite3_column_double(statement, Int32(column)) }
    public func string(_ column: Int) -> String? { text(Int32(column)) }

    /// By its byte count, so a U+0000 inside does not end it.
    private func text(_ index: Int32) -> String? {
        guard let text = sqlite3_column_text(statement, index) else { return nil }
        let count = Int(sqlite3_column_bytes(statement, index))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }
    public func isNull(_ column: Int) -> Bool { sqlite3_column_type(statement, Int32(column)) == SQLITE_NULL }

    public var values: [SQLiteValue] { (0..<count).map { self[$0] } }
}
