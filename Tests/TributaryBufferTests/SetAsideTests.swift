import Testing
import TributaryCore
import TributaryTesting
import TributaryWire
@testable import TributaryBuffer

/// `set-aside retry` and `set-aside purge` on the buffer: the counters on disk and in memory.
@Suite("set-aside batches")
struct SetAsideTests {
    @Test func aRetriedBatchIsTheSameBatchBackInTheQueueAndAPurgedOneCountsAsDropped() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        try buffer.append(Reading.series(30), quarantined: [])
        #expect(try buffer.sealDueBatches(maxReadings: 10, maxAgeMs: 0) == 3)
        let sent = try buffer.claimBatches(limit: 3)
        buffer.release(sent.map(\.identity.sequence))
        try buffer.recordAttempt(1, error: "refused")
        try buffer.setAside(1, reason: "400: too many readings")
        try buffer.setAside(2, reason: "400: too many readings")
        #expect(buffer.snapshot.setAsideBatches == 2 && buffer.snapshot.sealedBatches == 1 && buffer.snapshot.sealedReadings == 10)
        let aside = try buffer.setAsideBatches()
        #expect(aside.map(\.sequence) == [1, 2] && aside[0].lastError == "400: too many readings" && aside[0].attempts == 1)
        #expect(try aside[0].readings().map(\.timeMs) == (0..<10).map { Int64($0) })

        #expect(try buffer.retrySetAside(1) == 10)
        #expect(try buffer.retrySetAside(1) == nil, "no longer set aside")
        #expect(try buffer.retrySetAside(99) == nil)
        let queued = try buffer.claimBatches(limit: 10, forSending: false)
        #expect(queued.map(\.identity.sequence) == [1, 3] && queued[0].attempts == 0)
        #expect(queued[0].payload == sent[0].payload, "the same bytes: an aggregator that has it answers duplicate")
        buffer.release(queued.map(\.identity.sequence))
        #expect(buffer.snapshot.setAsideBatches == 1 && buffer.snapshot.sealedBatches == 2 && buffer.snapshot.sealedReadings == 20)
        #expect(try buffer.dropOldest().total == 0, "the quota never drops a batch sent once, the retried one included")
        #expect(try buffer.claimBatches(limit: 10, forSending: false).map(\.identity.sequence).contains(1))

        #expect(try buffer.purgeSetAside(2) == 10)
        #expect(try buffer.purgeSetAside(2) == nil)
        #expect(buffer.snapshot.setAsideBatches == 0 && buffer.snapshot.droppedTotal == 10)
        let dropped = buffer.snapshot.droppedTotal
        buffer.close()
        let reopened = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        defer { reopened.close() }
        #expect(reopened.snapshot.setAsideBatches == 0 && reopened.snapshot.droppedTotal == dropped)
        #expect(reopened.snapshot.sealedBatches == buffer.snapshot.sealedBatches)
    }
}
