import Foundation
import Testing
import TributaryCore
import TributarySQLite
import TributaryTesting
@testable import TributaryBuffer

/// The pieces behind `buffer.max_bytes`: dropping the oldest unsent readings, never a batch
/// being sent, every drop counted and persisted; and a full disk recognised as such.
@Suite("buffer quota")
struct BufferQuotaTests {
    @Test func dropOldestFreesWholeSealedBatchesOldestFirstThenUnsealedReadings() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("b.sqlite")
        var buffer = try BufferStore(path: path, gatewayID: "gw")
        try buffer.append(Reading.series(450), quarantined: [])
        try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 60_000, monotonicNowMs: 0)  // batches 1-4, 50 unsealed
        // Batch 4 was sent once without an answer: the aggregator may hold it, so it is never dropped.
        try buffer.recordAttempt(4, error: "timed out")

        let sending = try buffer.claimBatches(limit: 1)
        #expect(sending.map(\.identity.sequence) == [1])
        // Batch 1 is on its way to the aggregator: dropping it could count as lost a batch
        // the sink then holds. The oldest droppable one is batch 2.
        #expect(try buffer.dropOldest() == DroppedReadings(sealed: 100, sealedBatch: 2, unsealed: 0))
        #expect(try buffer.dropOldest() == DroppedReadings(sealed: 100, sealedBatch: 3, unsealed: 0))
        #expect(try buffer.dropOldest(maxUnsealed: 30) == DroppedReadings(sealed: 0, sealedBatch: nil, unsealed: 30))
        #expect(try buffer.dropOldest(maxUnsealed: 30).unsealed == 20)
        #expect(try buffer.dropOldest().total == 0, "only the batch being sent and the one sent before are left")
        buffer.release(sending.map(\.identity.sequence))
        #expect(buffer.snapshot.droppedTotal == 250)
        #expect(buffer.snapshot.sealedBatches == 2 && buffer.snapshot.sealedReadings == 200 && buffer.snapshot.unsealedReadings == 0)
        buffer.close()

        buffer = try BufferStore(path: path, gatewayID: "gw")
        #expect(buffer.snapshot.droppedTotal == 250, "the count is persisted")
        #expect(try buffer.oldestSealedBatch()?.identity.sequence == 1)
        buffer.close()
    }

    @Test func claimsNeverHandOutABatchTwice() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("b.sqlite"), gatewayID: "gw")
        try buffer.append(Reading.series(500), quarantined: [])
        try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 60_000, monotonicNowMs: 0)
        let first = try buffer.claimBatches(limit: 2).map(\.identity.sequence)
        let second = try buffer.claimBatches(limit: 2).map(\.identity.sequence)
        #expect(first == [1, 2] && second == [3, 4])
        buffer.release([1])
        #expect(try buffer.claimBatches(limit: 4).map(\.identity.sequence) == [1, 5])
        #expect(try buffer.oldestUnacknowledgedMs(excluding: [1, 2, 3]) == 300)
        buffer.close()
    }

    @Test func freedSpaceLowersTheMeasuredSize() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("b.sqlite"), gatewayID: "gw")
        let empty = try buffer.sizeBytes()
        try buffer.append(Reading.series(5000), quarantined: [])
        try buffer.sealDueBatches(maxReadings: 1000, maxAgeMs: 60_000, monotonicNowMs: 0)
        let full = try buffer.sizeBytes()
        #expect(full > empty)
        while try buffer.dropOldest().total > 0 {}
        #expect(try buffer.sizeBytes() < full, "the quota counts pages in use, and dropped rows free theirs")
        buffer.close()
    }

    @Test func aFullDiskIsRecognised() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("b.sqlite")
        let buffer = try BufferStore(path: path, gatewayID: "gw")
        // SQLite reports SQLITE_FULL both for a full disk and for max_page_count: the same path.
        let database = try SQLiteDatabase(path: path)
        let pages = try database.withConnection { c throws(SQLiteError) in try c.scalar("PRAGMA page_count")?.int64 ?? 0 }
        database.close()
        try buffer.limitPagesForTesting(Int(pages) + 2)
        #expect {
            for round in 0..<100 { try buffer.append(Reading.series(1000, from: round * 1000), quarantined: []) }
        } throws: { error in
            (error as? SQLiteError)?.isDiskFull == true
        }
        buffer.close()
    }
}

/// Sealing by age after the buffer emptied: row ids start again at 1, and the new readings must
/// wait out `batch_max_age_ms` like any others (attack round 12: they were sealed at once, and
/// the arrival entries of the rows gone were never let go).
@Suite("buffer sealing by age")
struct BufferSealingAgeTests {
    @Test func readingsAfterTheBufferEmptiedWaitTheirAge() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("b.sqlite"), gatewayID: "gw")
        try buffer.append(Reading.series(30), quarantined: [], monotonicNowMs: 0)
        #expect(try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 10_000, monotonicNowMs: 10_000) == 1, "all 30 sealed by age")
        try buffer.append(Reading.series(1, from: 100), quarantined: [], monotonicNowMs: 20_000)
        #expect(try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 10_000, monotonicNowMs: 20_001) == 0, "1 ms old: not due")
        #expect(try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 10_000, monotonicNowMs: 29_999) == 0)
        #expect(try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 10_000, monotonicNowMs: 30_000) == 1, "due after its age")
        #expect(buffer.arrivals.withLock { $0.count } <= 1, "entries of rows gone are let go")
    }
}
