import AsyncHTTPClient
import CSQLite
import Foundation
import NIOCore
import TributaryBuffer
import TributaryRuntime
import TributarySync
import TributaryAggregator
import TributarySinks
import TributaryClickHouse
import TributaryCore
import TributaryTesting
import TributaryWire

/// Agent batches for the sink benchmarks: `gateways` gateways, each sending `batchesPerGateway`
/// batches of `batchSize` plug readings, as SyncRequest bodies ready to post (zstd, as agents
/// send them), so the client costs next to nothing beside the aggregator.
struct SinkLoad {
    struct Request {
        let identity: BatchIdentity
        let body: ByteBuffer
    }

    let batches: [[Request]]
    let readings: [Reading]
    let batchSize: Int

    init(gateways: Int, batchesPerGateway: Int, batchSize: Int) throws {
        var batches: [[Request]] = []
        var all: [Reading] = []
        for g in 0..<gateways {
            let gateway = String(format: "gw-bench-%03d", g + 1)
            let readings = try simulatedReadings(messages: batchesPerGateway * batchSize / 5, sensors: 20, gatewayID: gateway).readings
            var requests: [Request] = []
            for (index, start) in stride(from: 0, to: readings.count, by: batchSize).enumerated() {
                let slice = Array(readings[start..<min(start + batchSize, readings.count)])
                let identity = BatchIdentity(gatewayID: gateway, epoch: "bench-epoch", sequence: UInt64(index + 1))
                var request = Tributary_V1_SyncRequest()
                request.batch = BatchCodec.encode(identity: identity, readings: slice, sealedAtMs: slice.last?.timeMs ?? 0)
                request.status.gatewayID = gateway
                request.status.agentVersion = "tributary-bench"
                request.status.clockMs = WallClock.nowMs()
                request.status.brokerConnected = true
                let body = Compression.compress(try request.serializedBytes(), encoding: .zstd)
                requests.append(Request(identity: identity, body: ByteBuffer(bytes: body)))
            }
            batches.append(requests)
            all += readings
        }
        self.batches = batches
        self.readings = all
        self.batchSize = batchSize
    }

    var batchCount: Int { batches.reduce(0) { $0 + $1.count } }

    /// Posts every batch, each gateway's in order and one at a time, as agents do, all gateways
    /// at once, each on its own connection; waits out 429/503 and retries. Throws on anything
    /// but an acceptance.
    func post(to url: String) async throws {
        var configuration = HTTPClient.Configuration()
        // The default (8 per host) would let only 8 gateways talk at once.
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: batches.count)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for requests in batches {
                    group.addTask {
                        for request in requests { try await Self.send(request, to: url, http: http) }
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    private static func send(_ request: Request, to url: String, http: HTTPClient) async throws {
        while true {
            let post = SyncClient.batchRequest(url: url, body: request.body, encoding: .zstd, token: nil)
            let response = try await http.execute(post, timeout: .seconds(120))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            switch response.status.code {
            case 200:
                let ack = try Tributary_V1_Ack(serializedBytes: Array(buffer: bytes))
                guard ack.outcome == .accepted else { throw BenchError("batch \(request.identity): \(ack.outcome) \(ack.reason)") }
                return
            case 429, 503:
                let waitMs = response.headers.first(name: "Retry-After").flatMap(Int.init).map { $0 * 1000 } ?? 50
                try await Task.sleep(for: .milliseconds(min(waitMs, 1000)))
            default:
                throw BenchError("batch \(request.identity): HTTP \(response.status.code) \(String(buffer: bytes))")
            }
        }
    }
}

/// 3a. The aggregator into its SQLite sink against a bare bulk insert of the same rows into the
/// same schema (the sink's own, index included): one prepared statement, one transaction.
func sqliteSinkBench(bin: String, load: SinkLoad) async throws -> BenchResult {
    var aggregatorRates: [Double] = []
    var aggregatorCPU: [Double] = []
    var directRates: [Double] = []
    for run in 0..<2 {
        let rig = try await Rig(bin: bin)
        let aggregator = try await rig.startAggregator()
        let cpuBefore = processUsage(aggregator.pid)?.cpuSeconds ?? 0
        let seconds = try await timed { try await load.post(to: "http://127.0.0.1:\(rig.httpPort)") }
        aggregatorCPU.append(((processUsage(aggregator.pid)?.cpuSeconds ?? cpuBefore) - cpuBefore) * 1e6 / Double(load.readings.count))
        _ = await aggregator.stop(signal: SIGTERM)
        let stored = try countRows(sqlite: rig.dir.file("aggregator/sink.sqlite"))
        guard stored == load.readings.count else { throw BenchError("the SQLite sink holds \(stored) of \(load.readings.count) readings") }
        aggregatorRates.append(Double(load.readings.count) / seconds)

        let directPath = rig.dir.file("direct-\(run).sqlite")
        try await SQLiteSink(path: directPath).close()  // the sink's schema, created by the sink itself
        directRates.append(Double(load.readings.count) / (try directSQLiteInsert(path: directPath, load.readings)))
        guard try countRows(sqlite: directPath) == load.readings.count else { throw BenchError("the direct insert lost rows") }
        await rig.stop()
    }
    var result = BenchResult(name: "sink-sqlite", what: "readings/s from agent batches to committed in the aggregator's SQLite sink",
                             value: median(aggregatorRates), unit: "readings/s",
                             baseline: "bare sqlite3 bulk insert of the same rows, same schema", baselineValue: median(directRates), goal: ">= 0.7x")
    result.met = (result.ratio ?? 0) >= 0.7
    result.notes = [
        "readings": String(load.readings.count), "batches": "\(load.batchCount) of \(load.batchSize) from \(load.batches.count) gateways at once",
        "runs": "2 each; the mean", "direct": "one transaction for all rows; the sink commits each group of batches and writes a ledger row per batch",
        "aggregator_cpu_us_per_reading": String(format: "%.2f", median(aggregatorCPU)),
    ]
    return result
}

/// 3b. The aggregator into ClickHouse against `clickhouse-client` inserting the same rows, as
/// one RowBinary stream, into the same table in another database.
func clickHouseSinkBench(bin: String, load: SinkLoad) async throws -> BenchResult {
    guard ClickHouseServer.unavailableReason == nil, FileManager.default.isExecutableFile(atPath: "/usr/bin/clickhouse-client") else {
        throw BenchError("clickhouse-server and clickhouse-client are needed (apt-get install clickhouse-server clickhouse-client)")
    }
    let rig = try await Rig(bin: bin)
    let server = try await ClickHouseServer(directory: rig.dir.file("clickhouse"))
    let client = ClickHouseClient(endpoint: try ClickHouseEndpoint(url: server.url()))
    var aggregatorRates: [Double] = []
    var aggregatorCPU: [Double] = []
    var directRates: [Double] = []
    let rows = rig.dir.file("rows.rowbinary")
    try Data(rowBinary(load.readings)).write(to: URL(fileURLWithPath: rows))
    // Runs 0 and 1 with the default compression (auto: none on 18.16, which takes no zstd);
    // run 2 with gzip, for what compressing the inserts costs and saves.
    var gzipRun: (rate: Double, cpu: Double) = (0, 0)
    for run in 0..<3 {
        let database = "agg\(run)"
        let config = rig.dir.file("aggregator-\(run).yaml")
        try (run == 2 ? "clickhouse:\n  compression: gzip\n" : "clickhouse:\n  compression: auto\n").write(toFile: config, atomically: true, encoding: .utf8)
        let aggregator = try ChildProcess(executable: bin + "/tributary-aggregator", arguments: [
            "--config", config, "--listen", "127.0.0.1:\(rig.httpPort)", "--data-dir", rig.dir.file("aggregator-\(run)"),
            "--sink", server.url(database: database), "--log-level", "warning",
        ], logFile: rig.dir.file("aggregator-\(run).log"))
        try await FreePort.waitUntilListening(rig.httpPort)
        let cpuBefore = processUsage(aggregator.pid)?.cpuSeconds ?? 0
        let seconds = try await timed { try await load.post(to: "http://127.0.0.1:\(rig.httpPort)") }
        let cpu = ((processUsage(aggregator.pid)?.cpuSeconds ?? cpuBefore) - cpuBefore) * 1e6 / Double(load.readings.count)
        _ = await aggregator.stop(signal: SIGTERM)
        let count = try await client.scalar("SELECT count() FROM \(database).readings FINAL").flatMap { Int($0) } ?? 0
        guard count == load.readings.count else { throw BenchError("\(database).readings holds \(count) of \(load.readings.count)") }
        if run == 2 {
            gzipRun = (Double(load.readings.count) / seconds, cpu)
            continue
        }
        aggregatorCPU.append(cpu)
        aggregatorRates.append(Double(load.readings.count) / seconds)

        let direct = "direct\(run)"
        for statement in ClickHouseSchema.tables(database: direct) { try await client.execute(statement) }
        let inserted = try timed {
            let insert = Process()
            insert.executableURL = URL(fileURLWithPath: "/usr/bin/clickhouse-client")
            insert.arguments = [
                "--host", "127.0.0.1", "--port", String(server.tcpPort), "--user", server.user, "--password", server.password,
                "--query", "INSERT INTO \(direct).readings (\(ClickHouseSink.readingColumns)) FORMAT RowBinary",
            ]
            insert.standardInput = FileHandle(forReadingAtPath: rows)
            try insert.run()
            insert.waitUntilExit()
            guard insert.terminationStatus == 0 else { throw BenchError("clickhouse-client exited with \(insert.terminationStatus)") }
        }
        directRates.append(Double(load.readings.count) / inserted)
        let directCount = try await client.scalar("SELECT count() FROM \(direct).readings FINAL").flatMap { Int($0) } ?? 0
        guard directCount == load.readings.count else { throw BenchError("\(direct).readings holds \(directCount) of \(load.readings.count)") }
    }
    let version = (try? await client.scalar("SELECT version()")) ?? nil
    await client.shutdown()
    await server.stop()
    await rig.stop()
    var result = BenchResult(name: "sink-clickhouse", what: "readings/s from agent batches to inserted in ClickHouse by the aggregator",
                             value: median(aggregatorRates), unit: "readings/s",
                             baseline: "clickhouse-client inserting the same rows (one RowBinary stream)", baselineValue: median(directRates),
                             goal: ">= 0.7x")
    result.met = (result.ratio ?? 0) >= 0.7
    result.notes = [
        "readings": String(load.readings.count), "batches": "\(load.batchCount) of \(load.batchSize) from \(load.batches.count) gateways at once",
        "runs": "2 each; the mean", "server": "clickhouse-server \(version ?? "?") on this machine",
        "differs": "the aggregator also looks each batch up in, and writes it to, the dedup ledger, and answers every batch",
        "aggregator_cpu_us_per_reading": String(format: "%.2f", median(aggregatorCPU)),
        "gzip_inserts": String(format: "%.1fk readings/s, aggregator %.2f us CPU per reading", gzipRun.rate / 1000, gzipRun.cpu),
        "insert_bytes_per_reading": insertSizes(load.readings),
    ]
    return result
}

/// Bytes per reading of a readings insert's body: as sent uncompressed, gzipped and with zstd, at
/// the level the sink uses (1), for rows of one 500-reading batch as the sink inserts them.
private func insertSizes(_ readings: [Reading]) -> String {
    let sample = Array(readings.prefix(500))
    let rows = rowBinary(sample)
    let perReading = { (bytes: [UInt8]) in Double(bytes.count) / Double(sample.count) }
    return String(format: "raw %.1f, gzip %.1f, zstd %.1f", perReading(rows),
                  perReading(Compression.compress(rows, encoding: .gzip, level: 1)), perReading(Compression.compress(rows, encoding: .zstd, level: 1)))
}

/// The rows as the ClickHouse sink inserts them (its column list), for the direct insert.
private func rowBinary(_ readings: [Reading]) -> [UInt8] {
    ClickHouseSink.rowBinary(of: [IncomingBatch(identity: BatchIdentity(gatewayID: "direct", epoch: "direct", sequence: 1),
                                                readings: readings, digest: 0, receivedAtMs: 0)])
}

func countRows(sqlite path: String) throws -> Int {
    let db = try BareSQLite(path: path, readOnly: true)
    let stmt = try db.prepare("SELECT count(*) FROM readings")
    defer { sqlite3_finalize(stmt) }
    guard sqlite3_step(stmt) == SQLITE_ROW else { throw BenchError("count failed") }
    return Int(sqlite3_column_int64(stmt, 0))
}

/// The direct insert: sqlite3_prepare once, bind and step per row, one transaction, into the
/// sink's tables with the sink's pragmas: each series' description once (looked up in a
/// dictionary, as the sink does per batch), a batch row per 500 readings, a row per reading.
private func directSQLiteInsert(path: String, _ readings: [Reading]) throws -> Double {
    let db = try BareSQLite(path: path)
    try db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
    let series = try db.prepare("INSERT INTO series (gateway_id, sensor_id, metric, topic, unit, labels) VALUES (?,?,?,?,'','')")
    let batches = try db.prepare("INSERT INTO batches (gateway_id, epoch, sequence) VALUES (?, 'bench-epoch', ?)")
    let rows = try db.prepare("""
        INSERT INTO reading_rows (series_id, batch_id, time_ms, received_ms, value, value_int, value_text, value_type) VALUES (?,?,?,?,?,?,?,?)
        """)
    defer { for stmt in [series, batches, rows] { sqlite3_finalize(stmt) } }
    let transient = BareSQLite.transient
    return try timed {
        try db.exec("BEGIN IMMEDIATE")
        var seriesIDs: [String: Int64] = [:]
        var batchID: Int64 = 0
        for (index, r) in readings.enumerated() {
            if index % 500 == 0 {
                sqlite3_bind_text(batches, 1, r.gatewayID, -1, transient)
                sqlite3_bind_int64(batches, 2, Int64(index / 500 + 1))  // one batch per 500 rows, as in the load
                try db.step(batches)
                batchID = db.lastInsertRowID
            }
            let key = r.gatewayID + "\u{1F}" + r.sensorID + "\u{1F}" + r.metric + "\u{1F}" + r.topic
            let seriesID: Int64
            if let known = seriesIDs[key] {
                seriesID = known
            } else {
                sqlite3_bind_text(series, 1, r.gatewayID, -1, transient)
                sqlite3_bind_text(series, 2, r.sensorID, -1, transient)
                sqlite3_bind_text(series, 3, r.metric, -1, transient)
                sqlite3_bind_text(series, 4, r.topic, -1, transient)
                try db.step(series)
                seriesID = db.lastInsertRowID
                seriesIDs[key] = seriesID
            }
            sqlite3_bind_int64(rows, 1, seriesID)
            sqlite3_bind_int64(rows, 2, batchID)
            sqlite3_bind_int64(rows, 3, r.timeMs)
            sqlite3_bind_int64(rows, 4, r.receivedAtMs)
            if let number = r.value.numericValue { sqlite3_bind_double(rows, 5, number) } else { sqlite3_bind_null(rows, 5) }
            if let integer = r.value.exactIntegerValue { sqlite3_bind_int64(rows, 6, integer) } else { sqlite3_bind_null(rows, 6) }
            if let text = r.value.textValue { sqlite3_bind_text(rows, 7, text, -1, transient) } else { sqlite3_bind_null(rows, 7) }
            sqlite3_bind_text(rows, 8, r.value.typeName, -1, transient)
            try db.step(rows)
        }
        try db.exec("COMMIT")
    }
}
