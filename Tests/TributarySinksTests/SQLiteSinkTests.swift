import Foundation
import Testing
import TributaryCore
import TributarySQLite
import TributaryTesting
@testable import TributarySinks

@Suite("SQLite sink schema")
struct SQLiteSinkTests {
    static func batch(_ sequence: UInt64, epoch: String = "e", labels: [String: String] = [:]) -> IncomingBatch {
        let readings: [Reading] = (0..<3).map { (i: Int) -> Reading in
            let value: ReadingValue = i == 2 ? .text("on") : .double(Double(i))
            let unit: String? = i == 0 ? "C" : nil
            return Reading(gatewayID: "gw", sensorID: "s\(i % 2)", metric: "m", topic: "t", timeMs: Int64(i), receivedAtMs: Int64(i) + 1,
                           value: value, unit: unit, labels: labels)
        }
        return IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: epoch, sequence: sequence), readings: readings,
                             digest: sequence, receivedAtMs: 0)
    }

    static func rows(_ path: String) throws -> [[SQLiteValue]] {
        let db = try SQLiteDatabase(path: path, readOnly: true)
        defer { db.close() }
        return try db.withConnection { c throws(SQLiteError) in
            try c.query("SELECT gateway_id, sensor_id, metric, time_ms, received_ms, value, value_text, value_type, unit, labels, topic, batch_epoch, batch_seq FROM readings ORDER BY batch_seq, time_ms")
        }
    }

    /// A series' description is stored once; `readings` shows every reading with it, in the
    /// columns queries always had.
    @Test func descriptionsAreStoredOnceAndTheViewKeepsTheColumns() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sink = try SQLiteSink(path: dir.file("sink.sqlite"))
        for sequence in 1...3 { #expect(try await sink.write(Self.batch(UInt64(sequence), labels: ["room": "a"])) == .accepted) }
        #expect(try await sink.write(Self.batch(3, labels: ["room": "a"])) == .duplicate)
        await sink.close()
        let rows = try Self.rows(dir.file("sink.sqlite"))
        #expect(rows.count == 9)
        #expect(rows[0] == [.text("gw"), .text("s0"), .text("m"), .integer(0), .integer(1), .real(0), .null, .text("number"), .text("C"),
                            .text("{\"room\":\"a\"}"), .text("t"), .text("e"), .integer(1)])
        #expect(rows[2][6] == .text("on") && rows[2][8] == .null)
        // Batches 2 and 3 found their series in the sink's memory of committed ones: the same.
        #expect(rows[3..<9].map { Array($0.prefix(11)) } == (rows[0..<3] + rows[0..<3]).map { Array($0.prefix(11)) })
        let db = try SQLiteDatabase(path: dir.file("sink.sqlite"), readOnly: true)
        defer { db.close() }
        let (series, batches) = try db.withConnection { c throws(SQLiteError) in
            (try c.scalar("SELECT count(*) FROM series")?.int64, try c.scalar("SELECT count(*) FROM batches")?.int64)
        }
        #expect(series == 3 && batches == 3, "three series (s0 with and without a unit, s1), three batches")
    }

    /// Batches written at once share transactions (the writer coalesces them), and each is still
    /// answered for itself: a copy of an identity in the same group is a duplicate, one with
    /// other contents a conflict, and a series added by one batch of a group is found by the next.
    @Test func concurrentBatchesShareTransactionsAndAreEachAnswered() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sink = try SQLiteSink(path: dir.file("sink.sqlite"))
        var batches = (1...60).map { Self.batch(UInt64($0)) }
        batches.append(Self.batch(7))  // the same contents: a duplicate
        let other = Self.batch(9)
        batches.append(IncomingBatch(identity: other.identity, readings: other.readings, digest: 999, receivedAtMs: 0))  // a conflict
        let results = try await withThrowingTaskGroup(of: (Int, SinkWriteResult).self) { group in
            for (index, batch) in batches.enumerated() { group.addTask { (index, try await sink.write(batch)) } }
            var results = [SinkWriteResult?](repeating: nil, count: batches.count)
            for try await (index, result) in group { results[index] = result }
            return results
        }
        let stats = sink.writeStats
        await sink.close()
        // Which of the two copies of 7 (and of 9) went first is up to the scheduler.
        #expect(results.filter { $0 == .accepted }.count == 60)
        #expect(results.filter { $0 == .duplicate }.count == 1 && results.filter { $0 == .conflict }.count == 1)
        #expect(stats.batches == 60 && stats.readings == 180)
        #expect(stats.writes < 60 && stats.largestWriteBatches > 1, "\(stats.writes) transactions for 60 batches")
        let rows = try Self.rows(dir.file("sink.sqlite"))
        #expect(rows.count == 180 && Set(rows.map { $0[12] }).count == 60)
        let db = try SQLiteDatabase(path: dir.file("sink.sqlite"), readOnly: true)
        defer { db.close() }
        #expect(try db.withConnection { c throws(SQLiteError) in try c.scalar("SELECT count(*) FROM series")?.int64 } == 3)
    }

    /// Sensor ids that Swift's `==` takes as equal and SQLite does not: two series, each with
    /// its own bytes.
    @Test func canonicallyEquivalentSensorsAreTwoSeries() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sink = try SQLiteSink(path: dir.file("sink.sqlite"))
        let readings = ["caf\u{00E9}", "cafe\u{0301}"].enumerated().map { i, name in
            Reading.sample(sensor: name, timeMs: Int64(i), value: .double(1))
        }
        for sequence in 1...2 {
            let batch = IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: "e", sequence: UInt64(sequence)),
                                      readings: sequence == 1 ? [readings[0]] : readings, digest: UInt64(sequence), receivedAtMs: 0)
            #expect(try await sink.write(batch) == .accepted)
        }
        await sink.close()
        let db = try SQLiteDatabase(path: dir.file("sink.sqlite"), readOnly: true)
        defer { db.close() }
        let sensors = try db.withConnection { c throws(SQLiteError) in
            try c.query("SELECT hex(sensor_id) FROM readings ORDER BY batch_seq, time_ms").map { $0[0] }
        }
        #expect(sensors == [.text("636166C3A9"), .text("636166C3A9"), .text("63616665CC81")])
    }

    /// A file written by the version-1 sink keeps its rows: they move to `readings_v1`, and the
    /// view shows old and new together.
    @Test func aVersion1FileKeepsItsRows() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("sink.sqlite")
        let old = try SQLiteDatabase(path: path)
        try old.withConnection { c throws(SQLiteError) in
            try c.execute("""
                CREATE TABLE readings (gateway_id TEXT NOT NULL, sensor_id TEXT NOT NULL, metric TEXT NOT NULL, time_ms INTEGER NOT NULL,
                    received_ms INTEGER NOT NULL, value REAL, value_int INTEGER, value_text TEXT, value_type TEXT NOT NULL, unit TEXT,
                    labels TEXT, topic TEXT NOT NULL, batch_gateway_id TEXT NOT NULL, batch_epoch TEXT NOT NULL, batch_seq INTEGER NOT NULL);
                CREATE TABLE batch_ledger (gateway_id TEXT NOT NULL, epoch TEXT NOT NULL, sequence INTEGER NOT NULL, digest INTEGER NOT NULL,
                    reading_count INTEGER NOT NULL, written_ms INTEGER NOT NULL, PRIMARY KEY (gateway_id, epoch, sequence)) WITHOUT ROWID;
                INSERT INTO readings VALUES ('gw', 's9', 'm', 5, 6, 1.5, NULL, NULL, 'number', NULL, NULL, 't', 'gw', 'old', 7);
                INSERT INTO batch_ledger VALUES ('gw', 'old', 7, 42, 1, 0);
                """)
        }
        old.close()
        let sink = try SQLiteSink(path: path)
        #expect(try await sink.write(IncomingBatch(identity: BatchIdentity(gatewayID: "gw", epoch: "old", sequence: 7), readings: [],
                                                   digest: 42, receivedAtMs: 0)) == .duplicate, "the old ledger still answers")
        #expect(try await sink.write(Self.batch(1)) == .accepted)
        await sink.close()
        let rows = try Self.rows(path)
        #expect(rows.count == 4 && rows.contains { $0[1] == .text("s9") && $0[11] == .text("old") })
        // Opened again: nothing moves twice.
        let again = try SQLiteSink(path: path)
        await again.close()
        #expect(try Self.rows(path).count == 4)
    }
}
