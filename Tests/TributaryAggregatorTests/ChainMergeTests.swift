import Foundation
import Testing
import TributaryAdminAPI
@testable import TributaryAggregator
import TributaryCore

/// One epoch's chain split over two aggregators by a failover, joined again (`ChainView.merged`):
/// what each aggregator saw alone, and what the operator sees from both.
@Suite("hash chain across aggregators")
struct ChainMergeTests {
    static func tracker(_ sequences: ClosedRange<UInt64>, links: (UInt64) -> ChainLink = { ChainTrackerTests.link($0) },
                        then more: [ClosedRange<UInt64>] = [], atMs: Int64 = 1000) -> ChainTracker {
        var tracker = ChainTracker(epoch: "e", sequence: sequences.lowerBound, link: links(sequences.lowerBound))
        for n in sequences.dropFirst() { tracker.add(sequence: n, link: links(n), atMs: atMs) }
        for range in more { for n in range { tracker.add(sequence: n, link: links(n), atMs: atMs) } }
        return tracker
    }

    @Test func batchesOneToFiftyAtAThenFiftyOneToAHundredAtBJoinIntact() {
        let a = Self.tracker(1...50).view(nowMs: 2000)
        let b = Self.tracker(51...100).view(nowMs: 2000)
        #expect(a.intact && b.intact && b.startSequence == 51)
        let joined = try! #require(ChainView.merged([b, a]))
        #expect(joined.intact && joined.waiting == 0 && joined.startSequence == 1 && joined.checkedThrough == 100, "\(joined)")
    }

    @Test func backOnAAfterB() {
        // A: 1-50, then (after the failover and back) 101-150, waiting for 51-100.
        let early = Self.tracker(1...50, then: [101...150]).view(nowMs: 2000)
        #expect(early.waiting == 50 && early.checkedThrough == 50)
        let b = Self.tracker(51...100).view(nowMs: 2000)
        let joined = try! #require(ChainView.merged([early, b]))
        #expect(joined.intact && joined.waiting == 0 && joined.checkedThrough == 150, "\(joined)")
        // Ten minutes on, A alone declares 51-100 a gap; joined with B there is none.
        let late = Self.tracker(1...50, then: [101...150]).view(nowMs: 2000 + ChainTracker.gapAfterMs + 1)
        #expect(late.gaps == 1 && late.missingBatches == 50)
        let joinedLate = try! #require(ChainView.merged([late, b]))
        #expect(joinedLate.intact && joinedLate.gaps == 0 && joinedLate.lastProblem.isEmpty, "\(joinedLate)")
    }

    @Test func aBatchNeitherHoldsIsAGapOnceGivenUpAndWaitingBefore() {
        // B lost batch 60: A waits, then gives up; the joined view shows the hole either way.
        let b = Self.tracker(51...59, then: [61...100]).view(nowMs: 2000)
        let a = Self.tracker(1...50).view(nowMs: 2000)
        let waiting = try! #require(ChainView.merged([a, b]))
        #expect(waiting.waiting == 1 && waiting.gaps == 0)
        let bLate = Self.tracker(51...59, then: [61...100]).view(nowMs: 2000 + ChainTracker.gapAfterMs + 1)
        let gap = try! #require(ChainView.merged([a, bLate]))
        #expect(gap.gaps == 1 && gap.missingBatches == 1 && gap.broken && gap.lastProblem.contains("batch 60"), "\(gap)")
    }

    @Test func anAlteredBatchAtTheSeamIsAMismatch() {
        // B's first batch names a previous digest that is not the one A holds for batch 50.
        let a = Self.tracker(1...50).view(nowMs: 2000)
        let b = Self.tracker(51...100, links: { $0 == 51 ? ChainLink(digest: "d51", previous: "forged") : ChainTrackerTests.link($0) }).view(nowMs: 2000)
        let joined = try! #require(ChainView.merged([a, b]))
        #expect(joined.mismatches == 1 && joined.broken, "\(joined)")
    }

    @Test func resendsToBothOverlapWithoutAlarm() {
        // Batches 40-60 reached both (lost acks, then resends elsewhere).
        let a = Self.tracker(1...60).view(nowMs: 2000)
        let b = Self.tracker(40...100).view(nowMs: 2000)
        let joined = try! #require(ChainView.merged([a, b]))
        #expect(joined.intact && joined.checkedThrough == 100 && joined.waiting == 0, "\(joined)")
    }

    @Test func otherEpochsAndOlderAggregators() {
        let a = Self.tracker(1...50).view(nowMs: 2000)
        var other = Self.tracker(51...100).view(nowMs: 2000)
        other.epoch = "older"
        #expect(ChainView.merged([a, other]) == a, "another epoch is left out")
        var old = Self.tracker(51...100).view(nowMs: 2000)
        old.segments = nil
        #expect(ChainView.merged([a, old]) == nil, "an aggregator that cannot say its runs: nothing to join")
    }

    @Test func segmentsSurviveStorageAndOldStateStillDecodes() throws {
        let tracker = Self.tracker(1...5, then: [8...9]).view(nowMs: 2000)
        #expect(tracker.segments == [ChainSegment(from: 1, through: 5, previous: "", digest: "d5"),
                                     ChainSegment(from: 8, through: 9, previous: "d7", digest: "d9", waiting: true)])
        let json = try JSONEncoder().encode(Self.tracker(1...5))
        let decoded = try JSONDecoder().decode(ChainTracker.self, from: json)
        #expect(decoded.view(nowMs: 2000).segments?.count == 1)
        // State stored before segments existed decodes, and gets its run from what it kept.
        var object = try JSONSerialization.jsonObject(with: json) as! [String: Any]
        object.removeValue(forKey: "closed")
        let old = try JSONDecoder().decode(ChainTracker.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(old.view(nowMs: 2000).segments == [ChainSegment(from: 1, through: 5, previous: "", digest: "d5")])
    }
}

/// Attack round 8's false gap: an aggregator that forgot its oldest runs (past 256) must not
/// make the joined view report their batches as held by no aggregator.
@Suite("hash chain across aggregators: forgotten runs")
struct ChainMergeForgottenTests {
    @Test func runsForgottenPastTheLimitStillCount() {
        // A: batches 1-88, then one batch at a time past a hole, more than 256 times.
        var a = ChainTracker(epoch: "e", sequence: 1, link: ChainTrackerTests.link(1))
        for n in UInt64(2)...88 { a.add(sequence: n, link: ChainTrackerTests.link(n), atMs: 1000) }
        var atMs: Int64 = 1000
        for k in UInt64(0)..<300 {
            atMs += ChainTracker.gapAfterMs + 1
            a.add(sequence: 90 + 2 * k, link: ChainTrackerTests.link(90 + 2 * k), atMs: atMs)
        }
        let viewA = a.view(nowMs: atMs + ChainTracker.gapAfterMs + 1)
        #expect((viewA.forgottenThrough ?? 0) >= 88 && (viewA.segments?.count ?? 0) <= ChainTracker.maxDeclared + 2)
        // B: everything A lacks, from 86 on, but not 87, which A took before the trouble.
        var b = ChainTracker(epoch: "e", sequence: 86, link: ChainTrackerTests.link(86))
        for n in UInt64(88)...(90 + 2 * 299) where n % 2 == 1 || n < 90 { b.add(sequence: n, link: ChainTrackerTests.link(n), atMs: 1000) }
        let joined = try! #require(ChainView.merged([viewA, b.view(nowMs: 2000)]))
        #expect(joined.gaps == 0 && joined.missingBatches == 0 && joined.lastProblem.isEmpty, "\(joined.lastProblem)")
    }
}
