import Foundation
import Logging
import Testing
@testable import TributaryAggregator
import TributaryRuntime
@testable import TributarySinks
import TributaryClickHouse
import TributaryCore
import TributaryTesting
import TributaryWire

/// The ClickHouse sink's write path in-process against a real clickhouse-server: the dedup
/// branches, text that needs escaping, and a write cut between its two inserts.
@Suite("ClickHouse sink against a real server", .serialized, .enabled(if: ClickHouseServer.unavailableReason == nil, "clickhouse-server is not installed"))
struct ClickHouseSinkServerTests {
    static func batch(_ sequence: UInt64, gateway: String = "gw-o'brien", values: [ReadingValue], digest: UInt64? = nil) -> IncomingBatch {
        let readings = values.enumerated().map { index, value in
            Reading(gatewayID: gateway, sensorID: "s\t1", metric: "m\\x", topic: "site/it's/\n", timeMs: 1_763_900_000_000 + Int64(index),
                    receivedAtMs: 1_763_900_000_500, value: value, unit: index == 0 ? "°C" : nil,
                    labels: index == 0 ? ["room": "a\tb", "q": "'\""] : [:])
        }
        return IncomingBatch(identity: BatchIdentity(gatewayID: gateway, epoch: "e-1", sequence: sequence), readings: readings,
                             digest: digest ?? sequence, receivedAtMs: 1)
    }

    static let awkward: [ReadingValue] = [.text("tab\there\nnew line, back\\slash, quote ' and \""), .double(-1.25e-7), .integer(Int64.min),
                                          .boolean(true), .text(""), .text("\\N")]

    func withSink(_ body: (ClickHouseSink, ClickHouseClient) async throws -> Void) async throws {
        try await withClickHouseSink(body)
    }

    @Test("awkward text, labels and ids round-trip exactly; a resend is a duplicate; other contents a conflict")
    func roundTripAndDedup() async throws {
        try await withSink { sink, client in
            let batch = Self.batch(1, values: Self.awkward)
            #expect(try await sink.write(batch) == .accepted)
            #expect(try await sink.write(batch) == .duplicate)
            #expect(try await sink.write(Self.batch(1, values: [.double(1)], digest: 99)) == .conflict)

            let rows = try await client.select("""
                SELECT gateway_id, sensor_id, metric, topic, value_type, value, value_int, value_text, unit, labels
                FROM tributary.readings ORDER BY batch_index
                """)
            #expect(rows.count == Self.awkward.count, "written once, not on the duplicate or the conflict")
            for (row, reading) in zip(rows, batch.readings) {
                #expect(row[0] == reading.gatewayID && row[1] == reading.sensorID && row[2] == reading.metric && row[3] == reading.topic)
                #expect(row[4] == reading.value.typeName)
                #expect(row[8] == reading.unit && row[9] == LabelsJSON.encode(reading.labels))
                switch reading.value {
                case .text(let text): #expect(row[7] == text && row[5] == nil)
                case .double(let d): #expect(row[5].flatMap { Double($0) } == d && row[6] == nil)
                case .integer(let i): #expect(row[6] == String(i) && row[5].flatMap { Double($0) } == Double(i))
                case .boolean(let b): #expect(row[6] == (b ? "1" : "0"))
                }
            }
        }
    }

    /// ClickHouse 18.16 reads about 1.5% of two-decimal numbers in text one ulp off (-7.94 came
    /// back as -7.9399999999999995); the sink sends RowBinary, so every double arrives bit for bit.
    @Test("every double arrives bit for bit, including those ClickHouse misreads as text")
    func doublesArriveExactly() async throws {
        try await withSink { sink, client in
            let values = (-2000...2000).map { Double($0) / 100 } + [-0.0, 1e-300, -1.7976931348623157e308, 5e-324, 230.11, -6.56]
            #expect(try await sink.write(Self.batch(7, values: values.map { .double($0) })) == .accepted)
            let rows = try await client.select("""
                SELECT batch_index, reinterpretAsUInt64(reinterpretAsString(assumeNotNull(value))) FROM tributary.readings ORDER BY batch_index
                """)
            #expect(rows.count == values.count)
            let wrong = rows.filter { row in
                guard let index = row[0].flatMap({ Int($0) }), let bits = row[1].flatMap({ UInt64($0) }) else { return true }
                return bits != values[index].bitPattern
            }
            #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        }
    }

    @Test("two copies of one identity in one group: written once, the second answered duplicate")
    func copiesInOneGroup() async throws {
        try await withSink { sink, client in
            let batch = Self.batch(7, values: [.double(1), .double(2)])
            let results = await ClickHouseSink.write([batch, batch, Self.batch(8, values: [.double(3)])], client: client, database: "tributary")
            #expect(results.map { try? $0.get() } == [.accepted, .duplicate, .accepted])
            let count = try await client.scalar("SELECT count() FROM tributary.readings")
            #expect(count == "3")
        }
    }

    @Test("a write cut between its two inserts, then resent: extra rows before merging, exactly one copy under FINAL")
    func cutBetweenInserts() async throws {
        try await withSink { sink, client in
            let batch = Self.batch(3, values: [.double(1), .double(2), .text("x")])
            // The readings insert committed, then the aggregator died before the ledger row.
            try await ClickHouseSink.insertReadings(of: [batch], client: client, database: "tributary")
            #expect(try await sink.write(batch) == .accepted, "no ledger row: the resend is written again")
            #expect(try await client.scalar("SELECT count() FROM tributary.readings") == "6")
            #expect(try await client.scalar("SELECT count() FROM tributary.readings FINAL") == "3")
            #expect(try await sink.write(batch) == .duplicate, "now the ledger has it")
        }
    }

    /// The measurement behind coalescing, kept runnable: the same 400 batches of 250 readings
    /// from 64 concurrent callers (as an aggregator's in-flight requests), first each written by
    /// its own lookup and inserts, all at once (no coalescing), then through the sink's
    /// coalescing writer. It prints both times and their ratio; it asserts only what must hold:
    /// every row once, and fewer inserts when coalesced.
    @Test("coalescing: concurrent batches written in fewer inserts, every row once (prints the speed-up)")
    func coalescingMeasured() async throws {
        try await withSink { _, client in
            let sink = ClickHouseSink(endpoint: client.endpoint, logger: Logger(label: "test"))
            var refused = 0
            var seconds: [Double] = []
            for coalesced in [false, true] {
                let gateway = coalesced ? "gw-coalesced" : "gw-one-by-one"
                let started = ContinuousClock.now
                refused += try await withThrowingTaskGroup(of: Int.self) { tasks in
                    for caller in 0..<64 {
                        tasks.addTask {
                            var refused = 0
                            for sequence in stride(from: caller, to: 400, by: 64) {
                                let batch = Self.batch(UInt64(sequence), gateway: gateway, values: (0..<250).map { .double(Double($0)) })
                                if coalesced {
                                    _ = try await sink.write(batch)
                                } else {
                                    // Retried like an agent would: many small inserts can meet
                                    // ClickHouse's "too many parts" refusal.
                                    while (try? await ClickHouseSink.write([batch], client: client, database: "tributary")[0].get()) == nil {
                                        refused += 1
                                        try await Task.sleep(for: .milliseconds(100))
                                    }
                                }
                            }
                            return refused
                        }
                    }
                    return try await tasks.reduce(0, +)
                }
                let elapsed = ContinuousClock.now - started
                seconds.append(elapsed.inSeconds)
                let rows = try await client.scalar("SELECT count() FROM tributary.readings FINAL WHERE gateway_id = '\(gateway)'")
                #expect(rows == String(400 * 250), "every row once")
            }
            let writes = sink.writeStats.writes
            print("coalescing: 400 batches x 250 readings from 64 callers: one insert per batch \(String(format: "%.2f", seconds[0])) s "
                  + "(\(refused) refused and retried); "
                  + "coalesced into \(writes) inserts \(String(format: "%.2f", seconds[1])) s; ratio \(String(format: "%.1f", seconds[0] / seconds[1]))x")
            #expect(sink.writeStats.batches == 400 && writes < 400)
            await sink.close()
        }
    }

    @Test("compressed inserts: 18.16 refuses zstd bodies when asked, so auto sends none; gzip arrives row for row")
    func compressedInserts() async throws {
        try await withClickHouseSink { _, client in
            #expect(await !client.acceptsContentEncoding("zstd", selectOne: Compression.compress(Array("SELECT 1".utf8), encoding: .zstd)))
            #expect(await client.acceptsContentEncoding("gzip", selectOne: Compression.compress(Array("SELECT 1".utf8), encoding: .gzip)))
            let profile = try await ClickHouseServerProfile.read(client: client)
            let plan = try ClickHouseSink.InsertPlan(profile, base: [:], compression: .auto)
            #expect(!profile.acceptsZstd && plan.encoding == .identity)
        }
        var gzip = ClickHouseSink.Settings()
        gzip.compression = .gzip
        try await withClickHouseSink(settings: gzip) { sink, client in
            let batches = (1...20).map { n in
                IncomingBatch(identity: BatchIdentity(gatewayID: "gw-gzip", epoch: "e", sequence: UInt64(n)),
                              readings: Reading.series(50, from: n * 50, gateway: "gw-gzip", sensor: "s\(n % 3)"), digest: UInt64(n), receivedAtMs: 1)
            }
            try await withThrowingTaskGroup(of: SinkWriteResult.self) { group in
                for batch in batches { group.addTask { try await sink.write(batch) } }
                for try await result in group { #expect(result == .accepted) }
            }
            #expect(try await sink.write(batches[3]) == .duplicate)
            let sums = try await client.select("SELECT count(), sum(value_int) FROM tributary.readings FINAL WHERE gateway_id = 'gw-gzip'")
            #expect(sums.first == ["1000", String((50..<1050).reduce(0, +))])
        }
    }

    @Test("shard tables without the Distributed ones: the aggregator refuses to start instead of writing unsharded")
    func shardTablesWithoutDistributed() async throws {
        try await withSink { _, client in
            for statement in ClickHouseSchema.tables(database: "sharded", suffix: "_local") { try await client.execute(statement) }
            var endpoint = client.endpoint
            endpoint.database = "sharded"
            let sink = ClickHouseSink(endpoint: endpoint, logger: Logger(label: "test"))
            do throws(SinkError) {
                try await sink.prepare()
                Issue.record("prepared")
            } catch {
                #expect(error.kind == .misconfigured && error.description.contains("distributed.sql"), "\(error)")
            }
            #expect(try await client.scalar("SELECT count() FROM system.tables WHERE database = 'sharded' AND name = 'readings'") == "0")
            await sink.close()
        }
    }
}

/// A fresh ClickHouse server with the sink prepared on it and a client to read it, for `body`;
/// all three stopped afterwards, whether `body` throws or not.
func withClickHouseSink(settings: ClickHouseSink.Settings = .init(), _ body: (ClickHouseSink, ClickHouseClient) async throws -> Void) async throws {
    let dir = try TemporaryDirectory(prefix: "tributary-clickhouse")
    defer { dir.remove() }
    let server = try await ClickHouseServer(directory: dir.file("clickhouse"))
    let endpoint = try ClickHouseEndpoint(url: server.url())
    let sink = ClickHouseSink(endpoint: endpoint, settings: settings, logger: Logger(label: "test"))
    let client = ClickHouseClient(endpoint: endpoint)
    do {
        try await sink.prepare()
        try await body(sink, client)
    } catch {
        await sink.close()
        await client.shutdown()
        await server.stop()
        throw error
    }
    await sink.close()
    await client.shutdown()
    await server.stop()
}
