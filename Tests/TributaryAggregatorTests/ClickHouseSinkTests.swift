import Foundation
import Synchronization
import Testing
@testable import TributaryClickHouse
import TributaryCore
@testable import TributaryAggregator

/// The ClickHouse sink's pure parts; `IntegrationTests/ClickHouseTests` runs it against real servers.
@Suite("ClickHouse sink, pure parts")
struct ClickHouseSinkTests {
    @Test func tabSeparatedRoundTripsAwkwardText() {
        let texts: [String?] = ["plain", "tab\there", "line\nbreak", "back\\slash", "\\N", "", nil, "carriage\rreturn", "nul\0byte", "中文"]
        var writer = TabSeparated.Writer()
        for text in texts {
            writer.field(text)
            writer.field(Int64(-5))
            writer.endRow()
        }
        let rows = TabSeparated.parse(writer.bytes)
        #expect(rows.map { $0[0] } == texts)
        #expect(rows.allSatisfy { $0.count == 2 && $0[1] == "-5" })
    }

    @Test func doublesAreWrittenSoTheyReadBack() {
        for value in [1.5, 1e-05, 123456789.125, -0.1, 1e300] {
            var writer = TabSeparated.Writer()
            writer.field(value)
            #expect(Double(String(decoding: writer.bytes, as: UTF8.self)) == value)
        }
    }

    /// RowBinary as ClickHouse documents it: LEB128 lengths, little-endian numbers, a NULL flag
    /// before Nullable values. (That ClickHouse reads it back bit for bit, including -7.94,
    /// which 18.16 reads one ulp off as text, is checked against a real server in the
    /// integration tests.)
    @Test func rowBinaryEncodesEachType() {
        var w = RowBinary.Writer()
        w.string("ab")
        w.string(String(repeating: "x", count: 300))
        w.string(nil as String?)
        w.string("" as String?)
        w.int64(-2)
        w.int64(nil as Int64?)
        w.uint64(0x0102_0304_0506_0708)
        w.uint32(258)
        w.float64(-7.94)
        w.float64(nil)
        var expected: [UInt8] = [2, 0x61, 0x62]
        expected += [0xAC, 0x02] + [UInt8](repeating: 0x78, count: 300)  // 300 = 0b10_0101100
        expected += [1]
        expected += [0, 0]
        expected += [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        expected += [1]
        expected += [8, 7, 6, 5, 4, 3, 2, 1]
        expected += [2, 1, 0, 0]
        expected += [0] + (0..<8).map { UInt8(truncatingIfNeeded: (-7.94).bitPattern >> UInt64($0 * 8)) }
        expected += [1]
        #expect(w.bytes == expected)
    }

    @Test func endpointsParseWithDefaults() throws {
        let plain = try ClickHouseEndpoint(url: "clickhouse://ch.example")
        #expect(plain == ClickHouseEndpoint(host: "ch.example", port: 8123, database: "tributary"))
        let full = try ClickHouseEndpoint(url: "clickhouse+https://ingest:p%40ss@10.0.0.5:9443/metrics")
        #expect(full.secure && full.port == 9443 && full.database == "metrics" && full.user == "ingest" && full.password == "p@ss")
        #expect(full.baseURL == "https://10.0.0.5:9443/")
        #expect(full.description == "clickhouse+https://ingest@10.0.0.5:9443/metrics", "the password never shows")
        let v6 = try ClickHouseEndpoint(url: "clickhouse://[::1]:8123/tributary")
        #expect(v6.baseURL == "http://[::1]:8123/")
    }

    @Test(arguments: ["http://ch:8123/db", "clickhouse:///db", "clickhouse://ch/bad-name", "clickhouse://ch/db?user=x"])
    func badEndpointsAreRefused(url: String) {
        #expect(throws: ClickHouseURLError.self) { try ClickHouseEndpoint(url: url) }
    }

    @Test func aBadURLsErrorHidesThePassword() {
        do {
            _ = try ClickHouseEndpoint(url: "clickhouse://u:topsecret@ch/bad-name")
            Issue.record("accepted")
        } catch {
            #expect(!error.description.contains("topsecret") && error.description.contains("bad-name"), "\(error)")
        }
    }

    @Test func errorAnswersOfOldAndNewReleasesAreUnderstood() {
        let old = ClickHouseError.parse("Code: 193, e.displayText() = DB::Exception: Wrong password for user x, e.what() = DB::Exception\n")
        #expect(old.code == 193 && old.text == "code 193: DB::Exception: Wrong password for user x")
        let new = ClickHouseError.parse("Code: 516. DB::Exception: x: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED) (version 23.8.1)")
        #expect(new.code == 516 && new.text.hasPrefix("code 516: DB::Exception: x: Authentication failed"))
        #expect(ClickHouseError.parse("plain text").code == nil)
    }

    @Test func stringLiteralsAreQuoted() {
        #expect(ClickHouseClient.quote("it's a \\ test") == "'it\\'s a \\\\ test'")
    }

    /// The DDL shipped in deploy/clickhouse/ is what the aggregator runs (layout aside).
    @Test func shippedDDLMatchesTheCode() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        func statements(_ file: String) throws -> [String] {
            let text = try String(contentsOf: root.appendingPathComponent("deploy/clickhouse/" + file), encoding: .utf8)
            return ClickHouseSchema.statements(inFile: text).map(Self.normalized)
        }
        #expect(try statements("schema.sql") == ClickHouseSchema.tables(database: "tributary").map(Self.normalized))
        #expect(try statements("cluster/shard.sql") == ClickHouseSchema.tables(database: "tributary", suffix: "_local").map(Self.normalized))
        #expect(try statements("cluster/distributed.sql") == ClickHouseSchema.distributed(database: "tributary", cluster: "tributary").map(Self.normalized))
    }

    static func normalized(_ sql: String) -> String {
        sql.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static func batch(_ sequence: UInt64, readings: Int) -> IncomingBatch {
        IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: sequence),
                      readings: (0..<readings).map {
                          Reading(gatewayID: "gw", sensorID: "s", metric: "m", topic: "t", timeMs: Int64($0), receivedAtMs: 0, value: .double(1))
                      },
                      digest: sequence, receivedAtMs: 0)
    }

    @Test func batchesThatWaitAreWrittenTogetherAndEachGetsItsOwnResult() async {
        let groups = Mutex<[[UInt64]]>([])
        let writer = CoalescingWriter(maxBatches: 5, maxReadings: 1000) { group in
            groups.withLock { $0.append(group.map(\.identity.sequence)) }
            try? await Task.sleep(for: .milliseconds(50))
            return group.map { $0.identity.sequence % 2 == 0 ? .success(.accepted) : .success(.duplicate) }
        }
        let results = await withTaskGroup(of: (UInt64, SinkWriteResult?).self) { tasks in
            for sequence in UInt64(0)..<20 {
                tasks.addTask { (sequence, try? await writer.write(Self.batch(sequence, readings: 10)).get()) }
            }
            var results: [UInt64: SinkWriteResult?] = [:]
            for await (sequence, result) in tasks { results[sequence] = result }
            return results
        }
        #expect(results.count == 20 && results.allSatisfy { $0.value == ($0.key % 2 == 0 ? .accepted : .duplicate) })
        let seen = groups.withLock { $0 }
        #expect(seen.flatMap { $0 }.sorted() == Array(0..<20), "every batch was flushed exactly once")
        #expect(seen.allSatisfy { $0.count <= 5 } && seen.contains { $0.count > 1 }, "\(seen)")
        #expect(writer.stats.batches == 10 && writer.stats.writes == seen.count && writer.stats.largestWriteBatches > 1)
    }

    @Test func aLargeBatchGoesAloneAndAFailureReachesEveryCallerOfItsGroup() async throws {
        let groups = Mutex<[[UInt64]]>([])
        let writer = CoalescingWriter(maxBatches: 10, maxReadings: 100) { group in
            groups.withLock { $0.append(group.map(\.identity.sequence)) }
            try? await Task.sleep(for: .milliseconds(100))
            return group.map { _ in .failure(SinkError(.unavailable, "down")) }
        }
        // 1 occupies the writer; meanwhile 2 (large), 3 and 4 (small) queue up, in that order.
        let first = Task { await writer.write(Self.batch(1, readings: 10)) }
        try await Task.sleep(for: .milliseconds(30))
        let large = Task { await writer.write(Self.batch(2, readings: 500)) }
        try await Task.sleep(for: .milliseconds(10))
        let third = Task { await writer.write(Self.batch(3, readings: 10)) }
        try await Task.sleep(for: .milliseconds(10))
        let fourth = Task { await writer.write(Self.batch(4, readings: 10)) }
        for task in [first, large, third, fourth] {
            await #expect(throws: SinkError.self) { try await task.value.get() }
        }
        #expect(groups.withLock { $0 } == [[1], [2], [3, 4]], "the large batch went alone; the small ones behind it together")
        #expect(writer.stats.writes == 0 && writer.stats.batches == 0)
    }

    @Test func aFlushThatAnswersTooFewStillAnswersEveryCaller() async {
        let writer = CoalescingWriter(maxBatches: 10, maxReadings: 1000) { _ in [] }
        await #expect(throws: SinkError.self) { try await writer.write(Self.batch(1, readings: 1)).get() }
    }

    @Test(arguments: ["clickhouse://u:pa/ss@host/db", "clickhouse://u:12#34@host/db", "clickhouse://my%20host/db"])
    func mangledPasswordsAndHostsAreRefusedWithoutShowingThePassword(url: String) {
        do {
            _ = try ClickHouseEndpoint(url: url)
            Issue.record("accepted \(url)")
        } catch {
            #expect(!error.description.contains("ss@") && !error.description.contains("34@"), "\(error)")
        }
    }

    @Test func clickHouseCredentialsComeFromTheURLOrTheConfigNotBoth() throws {
        let config = try AggregatorConfig.parse(yaml: """
            data_dir: /tmp/x
            sink: clickhouse://ch.example:8123/tributary
            clickhouse:
              user: ingest
              password: s3cret
              timeout_seconds: 5
              max_insert_batches: 32
            """, file: "agg.yaml")
        #expect(config.sink == .clickhouse(ClickHouseEndpoint(host: "ch.example", port: 8123, user: "ingest", password: "s3cret")))
        #expect(config.clickHouse.timeout == .seconds(5) && config.clickHouse.maxInsertBatches == 32)
        do {
            _ = try AggregatorConfig.parse(yaml: """
                data_dir: /tmp/x
                sink: clickhouse://a:b@ch.example/tributary
                clickhouse:
                  password: other
                """, file: "agg.yaml")
            Issue.record("accepted two passwords")
        } catch {
            #expect(error.description.contains("clickhouse.password") && error.description.contains("agg.yaml"), "\(error)")
        }
    }
}
