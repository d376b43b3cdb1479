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
