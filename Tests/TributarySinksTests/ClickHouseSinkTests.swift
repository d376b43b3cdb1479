import Foundation
import Synchronization
import Testing
import TributaryClickHouse
import TributaryCore
import TributaryTesting
@testable import TributarySinks

/// The ClickHouse sink's pure parts (its DDL, the coalescing writer); `IntegrationTests/ClickHouseTests`
/// runs it against real servers, and `TributaryClickHouseTests` tests the client's formats.
@Suite("ClickHouse sink, pure parts")
struct ClickHouseSinkTests {
    /// The DDL shipped in deploy/clickhouse/ is what the aggregator runs (layout aside).
    @Test func shippedDDLMatchesTheCode() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        func statements(_ file: String) throws -> [String] {
            let text = try String(contentsOf: root.appendingPathComponent("deploy/clickhouse/" + file), encoding: .utf8)
            return ClickHouseSchema.statements(inFile: text).map(Self.normalized)
        }
        #expect(try statements("schema.sql") == ClickHouseSchema.tables(database: "tributary").map(Self.normalized))
        #expect(try statements("cluster/shard.sql") == ClickHouseSchema.tables(database: "tributary", suffix: "_local", replicated: true).map(Self.normalized))
        #expect(try statements("cluster/distributed.sql") == ClickHouseSchema.distributed(database: "tributary", cluster: "tributary").map(Self.normalized))
    }

    /// Inserts are synchronous through a Distributed table always; the quorum goes with them
    /// only when set.
    @Test func insertSettingsCarryTheQuorumWhenSet() {
        var settings = ClickHouseSink.Settings()
        #expect(settings.insertSettings == ["insert_distributed_sync": "1"])
        settings.insertQuorum = 2
        settings.insertQuorumTimeout = .seconds(3)
        #expect(settings.insertSettings == ["insert_distributed_sync": "1", "insert_quorum": "2", "insert_quorum_timeout": "3000"])
    }

    static func normalized(_ sql: String) -> String {
        sql.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static func batch(_ sequence: UInt64, readings: Int) -> IncomingBatch {
        IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: sequence),
                      readings: (0..<readings).map { .sample(timeMs: Int64($0), receivedAtMs: 0, value: .double(1)) },
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
}
