import Foundation
import Testing
import TributarySQLite
import TributaryTesting

/// The one SQLite wrapper: transactions, typed errors that name the file, read-only opening,
/// and files made for their user alone.
@Suite("SQLite database")
struct SQLiteDatabaseTests {
    @Test func aTransactionThatThrowsLeavesNothingAndTheErrorNamesFileAndSQL() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("t.sqlite")
        let db = try SQLiteDatabase(path: path)
        defer { db.close() }
        try db.withConnection { c throws(SQLiteError) in
            _ = try c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            _ = try c.transaction { () throws(SQLiteError) in try c.run("INSERT INTO t (v) VALUES (?)", "kept") }
        }
        do {
            try db.withConnection { c throws(SQLiteError) in
                try c.transaction { () throws(SQLiteError) in
                    _ = try c.run("INSERT INTO t (v) VALUES (?)", "rolled back")
                    _ = try c.run("INSERT INTO t (v) VALUES (NULL)")
                }
            }
            Issue.record("a NOT NULL violation was taken")
        } catch {
            #expect(error.description.contains(path) && error.description.contains("INSERT INTO t (v) VALUES (NULL)"), "\(error)")
        }
        let rows = try db.withConnection { c throws(SQLiteError) in try c.query("SELECT v FROM t") }
        #expect(rows == [[.text("kept")]])
    }

    @Test func readOnlyRefusesWritesAndAFileThatIsNotADatabaseIsCorrupt() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("t.sqlite")
        let writer = try SQLiteDatabase(path: path)
        try writer.withConnection { c throws(SQLiteError) in _ = try c.execute("CREATE TABLE t (v INTEGER)") }
        writer.close()
        let reader = try SQLiteDatabase(path: path, readOnly: true)
        defer { reader.close() }
        #expect(throws: SQLiteError.self) { try reader.withConnection { c throws(SQLiteError) in _ = try c.run("INSERT INTO t VALUES (1)") } }
        let text = dir.file("notes.txt")
        try String(repeating: "not a database\n", count: 100).write(toFile: text, atomically: true, encoding: .utf8)
        do {
            let db = try SQLiteDatabase(path: text)
            defer { db.close() }
            _ = try db.withConnection { c throws(SQLiteError) in try c.scalar("SELECT count(*) FROM sqlite_master") }
            Issue.record("a text file was read as a database")
        } catch {
            #expect(error.isCorrupt, "\(error)")
        }
    }

    @Test func aFullFileIsDiskFull() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try SQLiteDatabase(path: dir.file("t.sqlite"))
        defer { db.close() }
        do {
            try db.withConnection { c throws(SQLiteError) in
                _ = try c.execute("CREATE TABLE t (v BLOB)")
                _ = try c.execute("PRAGMA max_page_count = 8")
                for _ in 0..<64 { _ = try c.run("INSERT INTO t VALUES (randomblob(4000))") }
            }
            Issue.record("a file capped at 8 pages took 256 kB")
        } catch {
            #expect(error.isDiskFull, "\(error)")
        }
    }

    @Test func databasesAndDirectoriesAreTheirUsersAlone() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let old = umask(0o022)
        defer { umask(old) }
        let data = dir.file("data/nested")
        #expect(try PrivateFiles.makeDirectory(data) == false)
        let db = try SQLiteDatabase(path: data + "/t.sqlite")
        try db.withConnection { c throws(SQLiteError) in _ = try c.execute("CREATE TABLE t (v INTEGER)") }
        db.close()
        func mode(_ path: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
        }
        #expect(try mode(data) == 0o700 && mode(data + "/t.sqlite") == 0o600)
        let open = dir.file("open")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        #expect(try PrivateFiles.makeDirectory(open) == true, "an existing directory others can enter is reported, not changed")
        #expect(try mode(open) == 0o755)
    }
}
