import Foundation
import Testing
import TributaryClickHouse
import TributaryCore
import TributaryTesting
@testable import TributarySinks

/// What the sink sends each ClickHouse release, and how it splits an insert by partition. The
/// servers themselves: `IntegrationTests/ClickHousePartitionTests` (18.16) and
/// `IntegrationTests/ClickHouse26Tests` (26.x through chdb).
@Suite("ClickHouse sink, per server release")
struct ClickHouseServerProfileTests {
    static func profile(_ version: String, limit: Int? = nil) -> ClickHouseServerProfile {
        ClickHouseServerProfile(version: ClickHouseVersion(version)!, maxPartitionsPerInsert: limit)
    }

    @Test func eachReleaseGetsOnlySettingsItKnows() {
        var quorum = ClickHouseSink.Settings()
        quorum.insertQuorum = 2
        quorum.insertQuorumTimeout = .seconds(3)
        let base = ClickHouseSink.Settings().insertSettings
        // 18.16 refuses unknown settings: it gets the old names and nothing more.
        #expect(Self.profile("18.16.1").insertSettings(base) == ["insert_distributed_sync": "1"])
        #expect(Self.profile("21.10.1.1").insertSettings(base) == ["insert_distributed_sync": "1"])
        // async_insert exists from 21.11 (on by default from 26.2): off, the sink coalesces itself.
        #expect(Self.profile("21.11.2.2").insertSettings(base) == ["insert_distributed_sync": "1", "async_insert": "0"])
        #expect(Self.profile("23.8.1").insertSettings(base) == ["insert_distributed_sync": "1", "async_insert": "0"])
        // The new name of the synchronous distributed insert from 24.1.
        #expect(Self.profile("24.1.1.1").insertSettings(base) == ["distributed_foreground_insert": "1", "async_insert": "0"])
        #expect(Self.profile("26.9.2.1").insertSettings(quorum.insertSettings) == [
            "distributed_foreground_insert": "1", "async_insert": "0", "insert_quorum": "2", "insert_quorum_timeout": "3000",
        ])
        #expect(Self.profile("18.16.1").insertSettings(quorum.insertSettings) == quorum.insertSettings)
    }

    /// `clickhouse.compression`: auto takes zstd only from a server that decoded a zstd body when
    /// asked; zstd demanded from one that did not is a configuration error, not a quiet fallback.
    @Test func compressionFollowsWhatTheServerTakes() throws {
        var zstdServer = Self.profile("26.9.2.1")
        zstdServer.acceptsZstd = true
        let old = Self.profile("18.16.1")
        let base = ClickHouseSink.Settings().insertSettings
        #expect(try ClickHouseSink.InsertPlan(zstdServer, base: base, compression: .auto).encoding == .zstd)
        #expect(try ClickHouseSink.InsertPlan(old, base: base, compression: .auto).encoding == .identity)
        #expect(try ClickHouseSink.InsertPlan(old, base: base, compression: .gzip).encoding == .gzip)
        #expect(try ClickHouseSink.InsertPlan(zstdServer, base: base, compression: .none).encoding == .identity)
        #expect(ClickHouseSink.Settings().compression == .auto)
        do {
            _ = try ClickHouseSink.InsertPlan(old, base: base, compression: .zstd)
            Issue.record("zstd was accepted for a server that does not take it")
        } catch {
            #expect(error.kind == .misconfigured && error.message.contains("does not take zstd"))
        }
    }

    @Test func monthsPerInsertIsHalfThePartitionLimit() {
        #expect(Self.profile("18.16.1").monthsPerInsert == nil, "no limit, no split")
        #expect(Self.profile("26.9.2.1", limit: 0).monthsPerInsert == nil)
        #expect(Self.profile("26.9.2.1", limit: 100).monthsPerInsert == 50)
        #expect(Self.profile("26.9.2.1", limit: 7).monthsPerInsert == 3)
        #expect(Self.profile("26.9.2.1", limit: 1).monthsPerInsert == 1)
    }

    /// The month the partition expression puts a time in, as months since year 0.
    static let partitionMonths: [(timeMs: Int64, month: Int64)] = [
        (0, 1970 * 12 + 0),
        (1_763_900_000_000, 2025 * 12 + 10),            // 2025-11-23
        (1_709_208_000_000, 2024 * 12 + 1),             // 2024-02-29 12:00 UTC
        (951_868_800_000, 2000 * 12 + 2),               // 2000-03-01 00:00:00 UTC
        (946_684_799_999, 1999 * 12 + 11),              // 1999-12-31 23:59:59.999 UTC
        (4_294_967_295_000, 2106 * 12 + 1),             // the last second a DateTime holds: 2106-02-07
        (4_294_967_296_000, 1970 * 12 + 0),             // one past it wraps to 1970, as toDateTime does
        (-1_000, 2106 * 12 + 1),                        // -1 s wraps to 2^32 - 1
        (-999, 1970 * 12 + 0),                          // intDiv(-999, 1000) = 0
    ]

    @Test func partitionMonth() {
        for (timeMs, month) in Self.partitionMonths {
            #expect(ClickHouseSink.partitionMonth(ofTimeMs: timeMs) == month, "\(timeMs)")
        }
    }

    /// Readings one month apart from January 2000 on.
    static func monthly(_ count: Int, sequence: UInt64 = 1, from start: Int = 0) -> IncomingBatch {
        let readings = (start..<start + count).map { i in
            Reading.sample(timeMs: 946_684_800_000 + Int64(i) * 31 * 86_400_000, receivedAtMs: 1, value: .integer(Int64(i)))
        }
        return IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: sequence), readings: readings,
                             digest: sequence, receivedAtMs: 1)
    }

    @Test func insertsAreSplitByMonthOnlyPastTheLimit() {
        let batch = Self.monthly(150)
        let months = Set(batch.readings.map { ClickHouseSink.partitionMonth(ofTimeMs: $0.timeMs) })
        #expect(months.count == 150)
        let whole = ClickHouseSink.rowBinary(of: [batch])
        #expect(ClickHouseSink.rowBinaryParts(of: [batch], monthsPerInsert: nil) == [whole])
        #expect(ClickHouseSink.rowBinaryParts(of: [batch], monthsPerInsert: 150) == [whole], "within the limit: one insert, the same bytes")
        let parts = ClickHouseSink.rowBinaryParts(of: [batch], monthsPerInsert: 50)
        #expect(parts.count == 3)
        // Readings in month order: the parts are the whole cut in three, each row with its batch
        // identity and its position in the batch.
        #expect(parts.flatMap { $0 } == whole)
        #expect(parts[0] == ClickHouseSink.rowBinary(of: [Self.monthly(50)]))
        #expect(ClickHouseSink.rowBinaryParts(of: [batch], monthsPerInsert: 40).count == 4)
    }

    @Test func partsKeepEachReadingsIdentityAcrossBatches() {
        // Two batches interleaved over 4 months, 2 months per insert: each part holds both
        // batches' readings of its months, with the index each has in its own batch.
        let a = Self.monthly(4, sequence: 1), b = Self.monthly(4, sequence: 2)
        let parts = ClickHouseSink.rowBinaryParts(of: [a, b], monthsPerInsert: 2)
        func rows(_ batch: IncomingBatch, _ indices: Range<Int>) -> [UInt8] {
            var writer = RowBinary.Writer()
            for index in indices { ClickHouseSink.appendRow(batch.readings[index], index: index, of: batch.identity, to: &writer) }
            return writer.bytes
        }
        #expect(parts == [rows(a, 0..<2) + rows(b, 0..<2), rows(a, 2..<4) + rows(b, 2..<4)])
    }

    @Test func columnCheckIgnoresAnOperatorsExtraColumnsButNotAChangedType() {
        let rows = ClickHouseSchema.columns.flatMap { table in table.columns.map { [table.table, $0.name, $0.type] as [String?] } }
        #expect(ClickHouseSchema.columnProblem(database: "tributary", found: rows) == nil)
        #expect(ClickHouseSchema.columnProblem(database: "tributary", found: rows + [["readings", "checked", "UInt8"]]) == nil)
        let changed = rows.map { $0[1] == "written_ms" ? [$0[0], $0[1], "Int32"] : $0 }
        #expect(ClickHouseSchema.columnProblem(database: "tributary", found: changed) == "tributary.batch_ledger.written_ms is Int32, not Int64")
        #expect(ClickHouseSchema.columnProblem(database: "tributary", found: rows.filter { $0[1] != "batch_index" })
                == "tributary.readings.batch_index is missing, not UInt32")
    }

    /// The column list the refusal check compares against is the DDL's.
    @Test func columnListIsTheDDLs() {
        let ddl = ClickHouseSchema.tables(database: "tributary")
        for (table, columns) in ClickHouseSchema.columns {
            let statement = ddl.first { $0.contains("tributary.\(table) (") } ?? ""
            let declared = statement.split(separator: "\n").dropFirst().compactMap { line -> String? in
                let words = line.split(separator: "--")[0].split(whereSeparator: \.isWhitespace)
                guard words.count == 2 else { return nil }
                return String(words[0]) + " " + words[1].trimmingCharacters(in: CharacterSet(charactersIn: ","))
            }
            #expect(declared == columns.map { "\($0.name) \($0.type)" }, "\(table)")
        }
    }
}
