import Foundation
import Testing
import TributaryCore
import TributaryRuntime
import TributaryTesting
import TributaryWire
import TributaryCrypto
@testable import TributaryBuffer

@Suite("buffer file")
struct BufferStoreTests {
    /// A 409 for a reused identity: a new epoch, the refused batch and the epoch's unsent ones
    /// sealed again under it in their order with the same readings; batches sent already stay.
    @Test func aRefusedIdentityRenewsTheEpoch() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        let first = buffer.epoch
        try buffer.append(Reading.series(50), quarantined: [])
        _ = try buffer.sealDueBatches(maxReadings: 10, maxAgeMs: 0)  // batches 1-5
        let sent = try buffer.claimBatches(limit: 2)                   // 1 and 2 go out
        buffer.release(sent.map(\.identity.sequence))
        let renewal = try #require(try buffer.renewEpoch(resealing: 2))
        let second = try #require(renewal.newEpoch)
        #expect(second != first && buffer.epoch == second)
        #expect(renewal.resealed.map(\.old.sequence) == [2, 3, 4, 5] && renewal.resealed.map(\.new.sequence) == [6, 7, 8, 9])
        #expect(renewal.resealed.allSatisfy { $0.old.epoch == first && $0.new.epoch == second })
        let all = try buffer.claimBatches(limit: 10, forSending: false)
        #expect(all.map(\.identity) == [BatchIdentity(gatewayID: "gw", epoch: first, sequence: 1)]
                + (6...9).map { BatchIdentity(gatewayID: "gw", epoch: second, sequence: UInt64($0)) })
        let decoded = try all.flatMap { try BatchCodec.decode(try Tributary_V1_Batch(serializedBytes: $0.payload)) }
        #expect(decoded.map(\.timeMs).sorted() == (0..<50).map { Int64($0) }, "the same readings, once each")
        let firstOfNew = try Tributary_V1_Batch(serializedBytes: all[1].payload)
        #expect(firstOfNew.previousDigest.isEmpty, "the new epoch is a new chain")
        #expect(buffer.snapshot.sealedBatches == 5 && buffer.snapshot.sealedReadings == 50)
        // Batch 1 (sent in the old epoch) refused too: resealed into the current epoch, no new one.
        let again = try #require(try buffer.renewEpoch(resealing: 1))
        #expect(again.newEpoch == nil && again.resealed.map(\.new) == [BatchIdentity(gatewayID: "gw", epoch: second, sequence: 10)])
        buffer.close()
        let reopened = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        #expect(reopened.epoch == second)
        reopened.close()
    }

    /// The review sealed 5,000 readings of one repeated 1,000-byte text into batches the
    /// aggregator refused (stored far more than carried) and set aside, good readings and all.
    @Test func batchesStayWithinWhatTheAggregatorTakes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw")
        let text = String(repeating: "x", count: 1000)
        let readings: [Reading] = (0..<5000).map { (i: Int) -> Reading in
            let value: ReadingValue = i % 5 == 0 ? .double(Double(i)) : .text(text)
            let labels: [String: String] = i % 7 == 0 ? ["k": String(repeating: "v", count: 400)] : [:]
            return Reading(gatewayID: "gw", sensorID: "s\(i % 3)", metric: "blob", topic: "t", timeMs: Int64(i), receivedAtMs: Int64(i),
                           value: value, labels: labels)
        }
        try buffer.append(readings, quarantined: [])
        #expect(try buffer.sealDueBatches(maxReadings: 5000, maxAgeMs: 0) > 1, "split into several batches")
        let batches = try buffer.claimBatches(limit: 100, forSending: false)
        var total = 0
        for batch in batches {
            let decoded = try BatchCodec.decode(try Tributary_V1_Batch(serializedBytes: batch.payload))
            total += decoded.count
        }
        #expect(total == 5000)
    }

    /// A buffer file put back to a copy taken while readings were unsealed seals them again
    /// under the same identity: the same bytes (the aggregator answers duplicate, not 409 and
    /// a second copy under a new epoch).
    @Test func sealingTheSameReadingsAgainGivesTheSameBytes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let original = try BufferStore(path: dir.file("a.sqlite"), gatewayID: "gw")
        try original.append(Reading.series(30), quarantined: [])
        original.close()
        try FileManager.default.copyItem(atPath: dir.file("a.sqlite"), toPath: dir.file("b.sqlite"))
        var payloads: [[UInt8]] = []
        for name in ["a.sqlite", "b.sqlite"] {
            let buffer = try BufferStore(path: dir.file(name), gatewayID: "gw")
            _ = try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 0)
            payloads.append(try #require(try buffer.oldestSealedBatch()).payload)
            buffer.close()
            Thread.sleep(forTimeInterval: 0.01)
        }
        #expect(payloads[0] == payloads[1])
    }

    @Test func sealedBatchesAreFixedAndSurviveReopening() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("buffer.sqlite")
        var buffer = try BufferStore(path: path, gatewayID: "gw")
        let epoch = buffer.epoch
        try buffer.append(Reading.series(250), quarantined: [])
        #expect(try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 60_000, monotonicNowMs: 0) == 2, "only full batches are due")
        let first = try #require(try buffer.oldestSealedBatch())
        #expect(first.identity == BatchIdentity(gatewayID: "gw", epoch: epoch, sequence: 1))
        #expect(first.readingCount == 100)
        try buffer.append(Reading.series(10, from: 250), quarantined: [])
        #expect(buffer.snapshot.unsealedReadings == 60)
        buffer.close()

        buffer = try BufferStore(path: path, gatewayID: "gw")
        #expect(buffer.epoch == epoch)
        let again = try #require(try buffer.oldestSealedBatch())
        #expect(again.identity == first.identity)
        #expect(again.payload == first.payload, "a resend is the same batch")
        #expect(buffer.snapshot.sealedReadings == 200 && buffer.snapshot.unsealedReadings == 60)

        try buffer.acknowledge(1)
        try buffer.acknowledge(1)  // a second ack for the same batch changes nothing
        #expect(buffer.snapshot.acknowledgedTotal == 100)
        #expect(try buffer.oldestSealedBatch()?.identity.sequence == 2)
        // The age rule seals the partial rest; sequence numbers keep counting.
        #expect(try buffer.sealDueBatches(maxReadings: 100, maxAgeMs: 10, monotonicNowMs: MonotonicClock.nowMs() + 1_000_000) == 1)
        try buffer.setAside(2, reason: "test")
        let third = try #require(try buffer.oldestSealedBatch())
        #expect(third.identity.sequence == 3 && third.readingCount == 60)
        let decoded = try BatchCodec.decode(try Tributary_V1_Batch(serializedBytes: third.payload))
        #expect(decoded.map(\.timeMs) == (200..<260).map { Int64($0) })
        #expect(buffer.snapshot.setAsideBatches == 1)
        buffer.close()
    }

    @Test func refusesAnotherGatewaysFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("b.sqlite"), gatewayID: "gw-a")
        buffer.close()
        #expect {
            try BufferStore(path: dir.file("b.sqlite"), gatewayID: "gw-b")
        } throws: { error in
            "\(error)".contains("belongs to gateway 'gw-a'")
        }
    }

    @Test(arguments: [Data("this is not a database, just text that happens to be here".utf8), Data(repeating: 0xAB, count: 8192)])
    func refusesAForeignFileWithoutTouchingIt(_ content: Data) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("b.sqlite")
        try content.write(to: URL(fileURLWithPath: path))
        #expect(throws: BufferError.self) { try BufferStore(path: path, gatewayID: "gw") }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == content)
    }

    @Test func quarantineIsKeptAndCounted() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("b.sqlite"), gatewayID: "gw")
        let bad = QuarantinedPayload(topic: "x/y", payload: [0xFF, 0x00], reason: "payload is not UTF-8 text", receivedAtMs: 5)
        try buffer.append([], quarantined: [bad])
        #expect(try buffer.quarantinedPayloads() == [bad])
        #expect(buffer.snapshot.quarantinedTotal == 1)
        buffer.close()
    }

    /// The retention period: unsent readings received before the cutoff go, counted as dropped;
    /// a batch that was ever sent stays (it may have been written, its answer lost).
    @Test func expiryDeletesWhatWaitedTooLongButNeverASentBatch() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("expire.sqlite"), gatewayID: "gw")
        defer { buffer.close() }
        try buffer.append(Reading.series(30), quarantined: [])          // received at 0...29
        _ = try buffer.sealDueBatches(maxReadings: 10, maxAgeMs: 0)  // batches 1, 2, 3
        let sending = try buffer.claimBatches(limit: 1)                 // batch 1 goes out...
        buffer.release(sending.map(\.identity.sequence))                // ...and no answer comes
        try buffer.append(Reading.series(10, from: 30), quarantined: []) // unsealed, received at 30...39
        let expired = try buffer.expire(receivedBeforeMs: 35)
        #expect(expired.readings == 25 && expired.batches == 2, "batches 2 and 3, and 5 unsealed readings")
        #expect(buffer.snapshot.droppedTotal == 25 && buffer.snapshot.sealedBatches == 1 && buffer.snapshot.unsealedReadings == 5)
        #expect(try buffer.claimBatches(limit: 10).map(\.identity.sequence) == [1])
        // Claimed, not yet answered, and the agent stopped: it was sent, so it stays too.
        let again = try buffer.expire(receivedBeforeMs: 35)
        #expect(again.readings == 0 && again.batches == 0)
    }

    /// Each sealed batch names the digest of the one sealed before it, across a reopen.
    @Test func sealedBatchesFormAHashChain() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("chain.sqlite")
        var buffer = try BufferStore(path: path, gatewayID: "gw")
        try buffer.append(Reading.series(30), quarantined: [])
        _ = try buffer.sealDueBatches(maxReadings: 10, maxAgeMs: 0)
        buffer.close()
        buffer = try BufferStore(path: path, gatewayID: "gw")
        try buffer.append(Reading.series(10, from: 30), quarantined: [])
        _ = try buffer.sealDueBatches(maxReadings: 10, maxAgeMs: 0)
        let batches = try buffer.claimBatches(limit: 10)
        buffer.close()
        #expect(batches.map(\.identity.sequence) == [1, 2, 3, 4])
        let decoded = try batches.map { try Tributary_V1_Batch(serializedBytes: $0.payload) }
        #expect(decoded[0].previousDigest.isEmpty, "the epoch's first batch has no previous")
        for i in 1..<batches.count {
            #expect(Array(decoded[i].previousDigest) == BatchChain.digest(of: batches[i - 1].payload), "batch \(i + 1)")
        }
        // What the aggregator hashes, the batch encoded again after decoding, is what was stored.
        #expect(try decoded.map { try $0.serializedBytes() as [UInt8] } == batches.map(\.payload))
    }
}

/// The quarantine's reasons, grouped by kind as the agent logs them and the fleet view shows them.
@Suite("quarantine kinds")
struct QuarantineKindTests {
    @Test func kindsAreCountedMostFrequentFirstWithTheLatestExample() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let buffer = try BufferStore(path: dir.file("b.sqlite"), gatewayID: "gw")
        defer { buffer.close() }
        func q(_ reason: String) -> QuarantinedPayload { QuarantinedPayload(topic: "t", payload: [1], reason: reason, receivedAtMs: 1) }
        try buffer.append([], quarantined: [q("invalid JSON: unexpected end"), q("invalid JSON: bad escape"), q("no subscription matches the topic"),
                                            q("invalid timestamp: '2026-12-05T14:32:51' has no zone"), q("invalid JSON: trailing comma")])
        let kinds = try buffer.quarantineKinds()
        #expect(kinds.map(\.kind) == ["invalid JSON", "invalid timestamp", "no subscription matches the topic"])
        #expect(kinds.map(\.count) == [3, 1, 1])
        #expect(kinds[0].example == "invalid JSON: trailing comma", "the latest of its kind")
        #expect(BufferStore.quarantineKind("invalid JSON: x") == "invalid JSON")
        #expect(try buffer.quarantineKinds(limit: 1).count == 1)
    }
}
