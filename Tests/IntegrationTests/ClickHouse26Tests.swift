import Foundation
import Testing
@testable import TributaryClickHouse
import TributaryCore
@testable import TributarySinks
import TributaryTesting

/// The ClickHouse sink's SQL and bytes against ClickHouse 26.x: chdb-core, an in-process
/// ClickHouse of a current release, in a cached virtual environment (`scripts/chdb-venv.sh`).
/// chdb has no HTTP interface, so the sink's client cannot reach it: this test hands chdb the
/// sink's exact statements and the exact bytes it would send (files read with `FROM INFILE`),
/// through `scripts/chdb-run.py`, and decides here what the answers must be. The HTTP path is
/// tested against the 18.16 server (`ClickHouseSinkServerTests`, `ClickHousePartitionTests`).
@Suite("ClickHouse 26 (chdb)", .serialized)
struct ClickHouse26Tests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs `command` to its end; its exit status, stdout and stderr.
    static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, out: String, err: String) {
        let dir = try TemporaryDirectory(prefix: "tributary-chdb-run")
        defer { dir.remove() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: dir.file("out"), contents: nil)
        _ = FileManager.default.createFile(atPath: dir.file("err"), contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.file("out")))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.file("err")))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Bounded by the script itself: pip's own timeouts, flock -w 900.
        while process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        return (process.terminationStatus, try String(contentsOfFile: dir.file("out"), encoding: .utf8),
                try String(contentsOfFile: dir.file("err"), encoding: .utf8))
    }

    /// The venv's python, made now if missing. Cancels (skips) the test, printing why, only when
    /// there is none and none can be made (PyPI unreachable).
    static func chdbPython() async throws -> String {
        let (status, out, err) = try await run(root.appendingPathComponent("scripts/chdb-venv.sh").path, [])
        let said = err.trimmingCharacters(in: .whitespacesAndNewlines)
        if status == 3 {
            print("ClickHouse 26 (chdb) test skipped: \(said)")
            try Test.cancel("no chdb-core: \(said)")
        }
        try #require(status == 0, "scripts/chdb-venv.sh failed (\(status)): \(said)")
        if !said.isEmpty { print(said) }  // "installed chdb-core ... in N s" when it was made now
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// One chdb session on `dataDir` (kept between calls): runs `statements`, returns each one's
    /// rows, or the error ClickHouse answered.
    struct Chdb {
        let python: String
        let dir: TemporaryDirectory

        func run(_ statements: [String]) async throws -> [Result<[[String?]], ClickHouseError>] {
            let steps = statements.map { ["sql": $0] }
            try JSONSerialization.data(withJSONObject: steps).write(to: URL(fileURLWithPath: dir.file("steps.json")))
            let (status, out, err) = try await ClickHouse26Tests.run(python, [
                ClickHouse26Tests.root.appendingPathComponent("scripts/chdb-run.py").path, dir.file("chdb-data"),
                dir.file("steps.json"), dir.file("results.json"),
            ])
            try #require(status == 0, "chdb-run.py failed (\(status)): \(out) \(err)")
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("results.json")))) as? [String: Any])
            let results = try #require(answer["results"] as? [[String: Any]])
            try #require(results.count == statements.count)
            return results.map { result in
                if result["ok"] as? Bool == true {
                    return .success(TabSeparated.parse(Array((result["output"] as? String ?? "").utf8)))
                }
                let (code, text) = ClickHouseError.parse(result["error"] as? String ?? "")
                return .failure(ClickHouseError(.server, text, code: code))
            }
        }

        /// Runs statements that must all succeed; the rows of each.
        func rows(_ statements: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws -> [[[String?]]] {
            try await run(statements).enumerated().map { index, result in
                switch result {
                case .success(let rows): return rows
                case .failure(let error):
                    Issue.record("chdb refused \(statements[index]): \(error)", sourceLocation: sourceLocation)
                    throw error
                }
            }
        }

        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            try Data(bytes).write(to: URL(fileURLWithPath: dir.file(name)))
            return dir.file(name)
        }
    }

    /// An insert of `file` as the sink sends it, its settings as the URL's parameters are, here
    /// in the statement.
    static func insert(_ statement: String, file: String, settings: [String: String]) -> String {
        // "INSERT INTO t (cols) FORMAT F" -> "INSERT INTO t (cols) FROM INFILE 'f' SETTINGS ... FORMAT F"
        let format = statement.range(of: " FORMAT ")!
        let clause = settings.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: ", ")
        return String(statement[..<format.lowerBound]) + " FROM INFILE \(ClickHouseClient.quote(file))"
            + (clause.isEmpty ? "" : " SETTINGS \(clause)") + String(statement[format.lowerBound...])
    }

    /// Every kind of value, and the doubles and texts that break naive encoders.
    static let values: [ReadingValue] = [
        .double(-0.0), .double(0.0), .double(.nan), .double(-.nan), .double(Double(bitPattern: 0x7FF8_0000_0000_1234)),
        .double(Double(bitPattern: 0x7FF0_0000_0000_0001)),                  // a signalling NaN
        .double(.leastNonzeroMagnitude), .double(-.leastNonzeroMagnitude),      // the smallest subnormals
        .double(Double(bitPattern: 0x000F_FFFF_FFFF_FFFF)),                     // the largest subnormal
        .double(.leastNormalMagnitude), .double(.greatestFiniteMagnitude), .double(-.greatestFiniteMagnitude),
        .double(.infinity), .double(-.infinity), .double(0.1), .double(-7.94), .double(6.56), .double(1e-5),
        .integer(Int64.min), .integer(Int64.max), .integer(0), .integer(-1), .integer(1 << 53 + 1),
        .boolean(true), .boolean(false),
        .text(""), .text("\\N"), .text("tab\there, new\nline, cr\r, back\\slash, nul\0, quote ' and \", \\t"),
        .text("中文, é, 🚀, \u{FEFF}bom, \u{200B}"), .text(String(repeating: "x", count: 300)), .text("NULL"),
    ]

    static func everyKind(_ sequence: UInt64) -> IncomingBatch {
        let readings = values.enumerated().map { index, value in
            Reading(gatewayID: "gw-o'brien\t26", sensorID: index % 2 == 0 ? "s\t1" : "", metric: "m\\x.é", topic: "site/it's/\n/🚀",
                    timeMs: 1_763_900_000_000 + Int64(index), receivedAtMs: 1_763_900_000_500 - Int64(index), value: value,
                    unit: index % 3 == 0 ? "°C" : (index % 3 == 1 ? "" : nil),
                    labels: index % 2 == 0 ? ["room": "a\tb", "q": "'\"\\", "中": "🚀"] : [:])
        }
        return IncomingBatch(identity: BatchIdentity(gatewayID: "gw-o'brien\t26", epoch: "e-1\n", sequence: sequence),
                             readings: readings, digest: 0xFEDC_BA98_7654_3210, receivedAtMs: 1_763_900_001_000)
    }

    static func hex(_ text: String?) -> String? {
        text.map { $0.utf8.map { String(format: "%02X", $0) }.joined() }
    }

    @Test("ClickHouse 26: the schema files, the sink's DDL, settings, ledger query and RowBinary bytes, bit for bit; FINAL dedup; the monthly split")
    func sinkOnClickHouse26() async throws {
        let python = try await Self.chdbPython()
        let dir = try TemporaryDirectory(prefix: "tributary-chdb")
        defer { dir.remove() }
        let chdb = Chdb(python: python, dir: dir)
        let db = "sinkdb"

        // The server's profile, read with the sink's own queries, decides the settings.
        let profileRows = try await chdb.rows([ClickHouseServerProfile.versionQuery, ClickHouseServerProfile.limitQuery])
        let versionText = profileRows[0].first?.first.flatMap { $0 } ?? ""
        let profile = try #require(ClickHouseServerProfile(version: versionText, limit: profileRows[1]))
        print("ClickHouse 26 (chdb): version() = \(versionText), max_partitions_per_insert_block = \(profile.maxPartitionsPerInsert.map(String.init) ?? "none")")
        #expect(profile.version.major >= 26, "chdb-core brings ClickHouse 26.x, found \(versionText)")
        let plan = try ClickHouseSink.InsertPlan(profile, base: ClickHouseSink.Settings().insertSettings)
        #expect(plan.settings == ["async_insert": "0", "distributed_foreground_insert": "1"])
        #expect(plan.monthsPerInsert == 50, "100 partitions per insert by default")

        // Why: async_insert is on by default; the old setting name is only an alias now. And
        // every setting the sink sends is one this release knows.
        let settingRows = try await chdb.rows([
            "SELECT value FROM system.settings WHERE name = 'async_insert'",
            "SELECT alias_for FROM system.settings WHERE name = 'insert_distributed_sync'",
            "SELECT count() FROM system.settings WHERE name IN (\(plan.settings.keys.map(ClickHouseClient.quote).joined(separator: ", ")))",
        ])
        #expect(settingRows[0] == [["1"]], "async_insert on by default in 26.x")
        #expect(settingRows[1] == [["distributed_foreground_insert"]])
        #expect(settingRows[2] == [["\(plan.settings.count)"]])

        // deploy/clickhouse/schema.sql as shipped, then the sink's own DDL, twice (IF NOT EXISTS).
        let schemaFile = try String(contentsOf: Self.root.appendingPathComponent("deploy/clickhouse/schema.sql"), encoding: .utf8)
        _ = try await chdb.rows(ClickHouseSchema.statements(inFile: schemaFile))
        _ = try await chdb.rows(ClickHouseSchema.tables(database: db) + ClickHouseSchema.tables(database: db))
        // The cluster DDL needs what chdb has not: ZooKeeper and the {shard} macro (shard.sql),
        // a configured cluster (distributed.sql). Run in a database of its own (the files say
        // `tributary.`, which schema.sql made), over plain local tables, each is refused for that
        // and nothing else: its SQL parses and its tables resolve.
        func clustered(_ file: String) throws -> [String] {
            let text = try String(contentsOf: Self.root.appendingPathComponent("deploy/clickhouse/cluster/" + file), encoding: .utf8)
            return ClickHouseSchema.statements(inFile: text.replacingOccurrences(of: "tributary.", with: "clustered.")).dropFirst().map { $0 }
        }
        _ = try await chdb.rows(["CREATE DATABASE IF NOT EXISTS clustered"])
        let shard = try await chdb.run(try clustered("shard.sql"))
        _ = try await chdb.rows(Array(ClickHouseSchema.tables(database: "clustered", suffix: "_local").dropFirst()))
        let distributed = try await chdb.run(try clustered("distributed.sql"))
        let clusterCodes = (shard + distributed).map { result -> Int? in if case .failure(let e) = result { return e.code } else { return nil } }
        #expect(clusterCodes == [139, 139, 701, 701], "no macros (139), no cluster (701) in chdb: \(shard + distributed)")
        for (sql, tables) in [(ClickHouseSink.tablesQuery(database: "tributary"), 2), (ClickHouseSink.tablesQuery(database: db), 2)] {
            let rows = try await chdb.rows([sql])[0]
            #expect(rows.count == tables && rows.allSatisfy { $0.count == 2 && $0[1] == "ReplacingMergeTree" }, "\(rows)")
        }
        let columns = try await chdb.rows([ClickHouseSink.columnsQuery(database: db)])[0]
        #expect(ClickHouseSchema.columnProblem(database: db, found: columns) == nil, "26.x names the column types as the sink does")

        // The exact bytes the sink sends for a batch of every kind of value, inserted twice (a
        // resend after a lost answer), and its ledger row twice.
        let batch = Self.everyKind(26)
        let parts = ClickHouseSink.rowBinaryParts(of: [batch], monthsPerInsert: plan.monthsPerInsert)
        #expect(parts == [ClickHouseSink.rowBinary(of: [batch])], "one month: one insert")
        let readingsFile = try chdb.write("readings.bin", parts[0])
        let ledgerFile = try chdb.write("ledger.tsv", ClickHouseSink.ledgerRows(for: [batch]))
        let readingsInsert = Self.insert(ClickHouseSink.readingsInsert(database: db), file: readingsFile, settings: plan.settings)
        let ledgerInsert = Self.insert(ClickHouseSink.ledgerInsert(database: db), file: ledgerFile, settings: plan.settings)
        let ledgerQuery = ClickHouseSink.ledgerQuery(database: db, identities: [batch.identity, BatchIdentity(gatewayID: "gw", epoch: "e", sequence: 1)])
        let written = try await chdb.rows([
            ledgerQuery, readingsInsert, ledgerInsert, ledgerQuery, readingsInsert, ledgerInsert,
            "SELECT count() FROM \(db).readings", "SELECT count() FROM \(db).readings FINAL",
            "SELECT count() FROM \(db).batch_ledger FINAL",
            """
            SELECT batch_index, value_type, if(isNull(value), '', leftPad(hex(reinterpretAsUInt64(assumeNotNull(value))), 16, '0')),
                value_int, hex(value_text), isNull(value_text), hex(gateway_id), hex(sensor_id), hex(metric), hex(topic), time_ms,
                received_ms, hex(unit), isNull(unit), hex(labels), isNull(labels), hex(batch_gateway_id), hex(batch_epoch), batch_seq
            FROM \(db).readings FINAL ORDER BY batch_index
            """,
        ])
        #expect(written[0].isEmpty, "the ledger knows nothing before")
        #expect(written[3] == [[batch.identity.gatewayID, batch.identity.epoch, "26", String(batch.digest)]], "the ledger query finds the batch")
        #expect(written[6] == [["\(2 * batch.readings.count)"]], "both copies are stored until merged")
        #expect(written[7] == [["\(batch.readings.count)"]], "FINAL: every reading once")
        #expect(written[8] == [["1"]])
        let rows = written[9]
        try #require(rows.count == batch.readings.count)
        for (position, (row, reading)) in zip(rows, batch.readings).enumerated() {
            let context = "reading \(position): \(reading.value)"
            #expect(row[0] == String(position), "\(context)")
            #expect(row[1] == reading.value.typeName, "\(context)")
            #expect(row[2] == (reading.value.numericValue.map { String(format: "%016llX", $0.bitPattern) } ?? ""), "bit for bit: \(context)")
            #expect(row[3] == reading.value.exactIntegerValue.map(String.init), "\(context)")
            #expect(row[4] == Self.hex(reading.value.textValue) && row[5] == (reading.value.textValue == nil ? "1" : "0"), "\(context)")
            #expect(row[6] == Self.hex(reading.gatewayID) && row[7] == Self.hex(reading.sensorID) && row[8] == Self.hex(reading.metric)
                    && row[9] == Self.hex(reading.topic), "\(context)")
            #expect(row[10] == String(reading.timeMs) && row[11] == String(reading.receivedAtMs), "\(context)")
            #expect(row[12] == Self.hex(reading.unit) && row[13] == (reading.unit == nil ? "1" : "0"), "\(context)")
            let labels = LabelsJSON.encode(reading.labels)
            #expect(row[14] == Self.hex(labels) && row[15] == (labels == nil ? "1" : "0"), "\(context)")
            #expect(row[16] == Self.hex(batch.identity.gatewayID) && row[17] == Self.hex(batch.identity.epoch) && row[18] == "26", "\(context)")
        }

        // 150 months of readings in one batch: refused whole (252, on every retry), taken in the
        // sink's monthly parts, each reading once, the ledger row after the last part.
        let months = IncomingBatch(
            identity: BatchIdentity(gatewayID: "gw-months", epoch: "e", sequence: 1),
            readings: (0..<150).map { Reading.sample(gateway: "gw-months", timeMs: 946_684_800_000 + Int64($0) * 31 * 86_400_000, value: .integer(Int64($0))) },
            digest: 7, receivedAtMs: 1)
        let whole = try chdb.write("months.bin", ClickHouseSink.rowBinary(of: [months]))
        let monthParts = ClickHouseSink.rowBinaryParts(of: [months], monthsPerInsert: plan.monthsPerInsert)
        #expect(monthParts.count == 3)
        var statements = [Self.insert(ClickHouseSink.readingsInsert(database: db), file: whole, settings: plan.settings)]
        for (index, part) in monthParts.enumerated() {
            statements.append(Self.insert(ClickHouseSink.readingsInsert(database: db), file: try chdb.write("months-\(index).bin", part), settings: plan.settings))
        }
        statements += [
            Self.insert(ClickHouseSink.ledgerInsert(database: db), file: try chdb.write("months-ledger.tsv", ClickHouseSink.ledgerRows(for: [months])), settings: plan.settings),
            "SELECT count(), uniqExact(value_int), uniqExact(_partition_id) FROM \(db).readings FINAL WHERE gateway_id = 'gw-months'",
        ]
        let split = try await chdb.run(statements)
        guard case .failure(let refused) = split[0] else { Issue.record("150 months in one insert were taken"); return }
        #expect(refused.code == 252, "\(refused)")
        #expect(split.dropFirst().allSatisfy { if case .success = $0 { true } else { false } }, "\(split)")
        if case .success(let counts) = split.last { #expect(counts == [["150", "150", "150"]]) }
    }
}
