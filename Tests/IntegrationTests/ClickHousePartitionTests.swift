import Foundation
import Logging
import Testing
@testable import TributarySinks
import TributaryClickHouse
import TributaryCore
import TributaryTesting

/// The sink against a real clickhouse-server (Debian's 18.16): what it reads of the server at
/// start, inserts split by month with the ledger row after the last part (and a write cut between
/// parts), and batches refused for good versus refusals that are no batch's fault.
@Suite("ClickHouse sink: server profile, monthly split, refusals", .serialized,
       .enabled(if: ClickHouseServer.unavailableReason == nil, "clickhouse-server is not installed"))
struct ClickHousePartitionTests {
    func withServer(_ body: (ClickHouseSink, ClickHouseClient) async throws -> Void) async throws {
        try await withClickHouseSink(body)
    }

    /// `count` readings one month apart from January 2000.
    static func monthly(_ count: Int, gateway: String = "gw-months", sequence: UInt64 = 1) -> IncomingBatch {
        IncomingBatch(identity: BatchIdentity(gatewayID: gateway, epoch: "e", sequence: sequence),
                      readings: (0..<count).map {
                          Reading.sample(gateway: gateway, timeMs: 946_684_800_000 + Int64($0) * 31 * 86_400_000, value: .integer(Int64($0)))
                      },
                      digest: sequence, receivedAtMs: 1)
    }

    @Test("18.16's profile: its release, no partition limit, and only the settings it knows")
    func profileOf1816() async throws {
        try await withServer { (_: ClickHouseSink, client: ClickHouseClient) async throws -> Void in
            let profile = try await ClickHouseServerProfile.read(client: client)
            #expect(profile.version.major == 18 && profile.version.minor == 16, "\(profile.version)")
            #expect(profile.maxPartitionsPerInsert == nil && profile.monthsPerInsert == nil)
            let settings = profile.insertSettings(ClickHouseSink.Settings().insertSettings)
            #expect(settings == ["insert_distributed_sync": "1"])
            // And 18.16 does refuse what it does not know, which is why it gets nothing more.
            do throws(ClickHouseError) {
                try await client.execute("SELECT 1", settings: ["async_insert": "0"])
                Issue.record("18.16 took async_insert")
            } catch {
                #expect(error.code == 115, "\(error)")
            }
        }
    }

    @Test("150 months in one batch, 50 per insert: three inserts, then the ledger row; every reading once")
    func splitByMonth() async throws {
        try await withServer { (_: ClickHouseSink, client: ClickHouseClient) async throws -> Void in
            let batch = Self.monthly(150)
            let results = await ClickHouseSink.write([batch], client: client, database: "tributary", monthsPerInsert: 50)
            #expect(results.map { try? $0.get() } == [.accepted])
            #expect(try await client.scalar("SELECT count() FROM tributary.readings") == "150", "no part written twice")
            #expect(try await client.scalar("SELECT uniqExact(value_int) FROM tributary.readings FINAL") == "150")
            #expect(try await client.scalar("""
                SELECT uniqExact(partition) FROM system.parts WHERE database = 'tributary' AND table = 'readings' AND active
                """) == "150")
            #expect(try await client.scalar("SELECT count() FROM tributary.batch_ledger FINAL") == "1")
            let again = await ClickHouseSink.write([batch], client: client, database: "tributary", monthsPerInsert: 50)
            #expect(again.map { try? $0.get() } == [.duplicate])
        }
    }

    @Test("a write cut after its first part: no ledger row, so the resend is written whole, never answered duplicate with parts missing")
    func cutBetweenParts() async throws {
        try await withServer { (_: ClickHouseSink, client: ClickHouseClient) async throws -> Void in
            let batch = Self.monthly(150)
            let parts = ClickHouseSink.rowBinaryParts(of: [batch], monthsPerInsert: 50)
            // The first part committed, then the aggregator died.
            try await ClickHouseSink.insertReadingRows(parts[0], client: client, database: "tributary",
                                                       settings: ClickHouseSink.Settings().insertSettings)
            let resent = await ClickHouseSink.write([batch], client: client, database: "tributary", monthsPerInsert: 50)
            #expect(resent.map { try? $0.get() } == [.accepted])
            #expect(try await client.scalar("SELECT count() FROM tributary.readings") == "200", "the first part twice until merged")
            #expect(try await client.scalar("SELECT count() FROM tributary.readings FINAL") == "150", "every reading once")
            let again = await ClickHouseSink.write([batch], client: client, database: "tributary", monthsPerInsert: 50)
            #expect(again.map { try? $0.get() } == [.duplicate])
        }
    }

    @Test("a batch the operator's check refuses: refused for good with the reason, alone; the rest of its group written")
    func refusedForGood() async throws {
        try await withServer { (sink: ClickHouseSink, client: ClickHouseClient) async throws -> Void in
            // An operator's check, as 18.16 allows one (no CHECK constraints before 19.14).
            try await client.execute("""
                ALTER TABLE tributary.readings ADD COLUMN checked UInt8 MATERIALIZED throwIf(ifNull(value_text, '') = 'refuse me')
                """)
            func batch(_ sequence: UInt64, _ text: String) -> IncomingBatch {
                IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: sequence),
                              readings: [.sample(timeMs: 1_763_900_000_000, value: .text(text)), .sample(timeMs: 1_763_900_000_001, value: .integer(1))],
                              digest: sequence, receivedAtMs: 1)
            }
            let results = await ClickHouseSink.write([batch(1, "fine"), batch(2, "refuse me"), batch(3, "fine too")],
                                                     client: client, database: "tributary")
            #expect(try results[0].get() == .accepted && results[2].get() == .accepted)
            guard case .failure(let error) = results[1] else { Issue.record("taken: \(results[1])"); return }
            #expect(error.kind == .refused && error.message.contains("code 395"), "\(error)")
            #expect(try await client.scalar("SELECT count() FROM tributary.readings FINAL") == "4")
            #expect(try await client.scalar("SELECT groupArray(sequence) FROM (SELECT sequence FROM tributary.batch_ledger FINAL ORDER BY sequence)") == "[1,3]")

            // Through the sink (its coalescing writer), alone: 503 the first time (a table that
            // refuses every batch looks the same), refused for good once the refusal repeats
            // after another batch was written.
            for (attempt, expected) in [(1, SinkError.Kind.unavailable), (2, .refused)] {
                do throws(SinkError) {
                    _ = try await sink.write(batch(4, "refuse me"))
                    Issue.record("taken")
                } catch {
                    #expect(error.kind == expected, "attempt \(attempt): \(error)")
                }
                if attempt == 1 { #expect(try await sink.write(batch(6, "fine")) == .accepted) }
            }

            // Once a column the sink writes has another type, a refusal is the tables' fault,
            // not the batch's: 503, the batch waits on its gateway.
            try await client.execute("ALTER TABLE tributary.batch_ledger MODIFY COLUMN written_ms Int32")
            let afterChange = await ClickHouseSink.write([batch(5, "refuse me")], client: client, database: "tributary")
            guard case .failure(let unavailable) = afterChange[0] else { Issue.record("taken"); return }
            #expect(unavailable.kind == .unavailable, "\(unavailable)")
        }
    }

    @Test("a column an operator added that fails on every row (attack round 10): every batch 503, none set aside, all written once it is dropped")
    func aBrokenTableSetsNothingAside() async throws {
        try await withServer { sink, client in
            try await client.execute("ALTER TABLE tributary.readings ADD COLUMN oops UInt8 MATERIALIZED toUInt8(topic)")
            func batch(_ sequence: UInt64) -> IncomingBatch {
                IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: sequence),
                              readings: [.sample(timeMs: 1_763_900_000_000 + Int64(sequence), value: .integer(1))], digest: sequence, receivedAtMs: 1)
            }
            // A group, and each batch again alone, twice: nothing goes in, so nothing is the batch's fault.
            for _ in 0..<2 {
                for outcome in await ClickHouseSink.write([batch(1), batch(2), batch(3)], client: client, database: "tributary") {
                    guard case .failure(let error) = outcome else { Issue.record("taken: \(outcome)"); continue }
                    #expect(error.kind == .unavailable, "\(error)")
                }
                for sequence in 1...3 as ClosedRange<UInt64> {
                    do throws(SinkError) {
                        _ = try await sink.write(batch(sequence))
                        Issue.record("taken")
                    } catch {
                        #expect(error.kind == .unavailable, "\(error)")
                    }
                }
            }
            try await client.execute("ALTER TABLE tributary.readings DROP COLUMN oops")
            for sequence in 1...3 as ClosedRange<UInt64> { #expect(try await sink.write(batch(sequence)) == .accepted) }
            #expect(try await client.scalar("SELECT count() FROM tributary.readings FINAL") == "3")
        }
    }
}
