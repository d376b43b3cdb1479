import Testing
@testable import TributaryAggregator
import TributaryCore

/// The provenance chain of one epoch, batch by batch: links checked in any arrival order,
/// holes waited for and then declared, altered batches found either side of the alteration.
@Suite("hash chain")
struct ChainTrackerTests {
    /// Links for batches 1...n: digest "dN", each naming the one before.
    static func link(_ n: UInt64, previous: String? = nil) -> ChainLink {
        ChainLink(digest: "d\(n)", previous: previous ?? (n == 1 ? "" : "d\(n - 1)"))
    }

    static func tracker(feeding order: [UInt64], atMs: Int64 = 1000) -> ChainTracker {
        var tracker = ChainTracker(epoch: "e", sequence: order[0], link: link(order[0]))
        for n in order.dropFirst() { tracker.add(sequence: n, link: link(n), atMs: atMs) }
        return tracker
    }

    @Test(arguments: [[1, 2, 3, 4, 5], [1, 3, 2, 5, 4], [1, 5, 4, 3, 2], [1, 2, 2, 3, 1, 4, 5, 5]] as [[UInt64]])
    func everyOrderChecksEveryLink(_ order: [UInt64]) {
        let view = Self.tracker(feeding: order).view(nowMs: 2000)
        #expect(view.checkedThrough == 5 && view.highestSeen == 5 && view.waiting == 0 && view.startSequence == 1)
        #expect(view.intact && view.lastProblem.isEmpty, "\(view)")
    }

    @Test func aLateFirstBatchExtendsTheStartBackwards() {
        var tracker = Self.tracker(feeding: [3, 4])
        #expect(tracker.view.startSequence == 3)
        tracker.add(sequence: 2, link: Self.link(2), atMs: 1000)
        tracker.add(sequence: 1, link: Self.link(1), atMs: 1000)
        #expect(tracker.view.startSequence == 1 && tracker.view.intact)
        // One that does not match what its successor named is a mismatch, and does not extend it.
        var other = Self.tracker(feeding: [3, 4])
        other.add(sequence: 2, link: ChainLink(digest: "forged", previous: "d1"), atMs: 1000)
        #expect(other.view.startSequence == 3 && other.view.mismatches == 1)
    }

    @Test func anAlteredBatchIsAMismatch() {
        // Batch 3 arrives with other contents (another digest): batch 4 still names the original.
        var tracker = Self.tracker(feeding: [1, 2])
        tracker.add(sequence: 3, link: ChainLink(digest: "altered", previous: "d2"), atMs: 1000)
        tracker.add(sequence: 4, link: Self.link(4), atMs: 1000)
        #expect(tracker.view.mismatches == 1 && tracker.view.checkedThrough == 4)
        #expect(tracker.view.lastProblem.contains("batch 4"), "\(tracker.view.lastProblem)")
        // A batch naming a previous digest that is not its predecessor's.
        tracker.add(sequence: 5, link: ChainLink(digest: "d5", previous: "not-d4"), atMs: 1000)
        #expect(tracker.view.mismatches == 2)
    }

    @Test func aHoleIsWaitedForThenDeclaredAGap() {
        var tracker = Self.tracker(feeding: [1, 2, 4, 5], atMs: 1000)
        var view = tracker.view(nowMs: 2000)
        #expect(view.checkedThrough == 2 && view.highestSeen == 5 && view.waiting == 1 && view.waitingSinceMs == 1000)
        #expect(view.intact, "waiting is not yet a gap")
        // Ten minutes on, nothing came: shown as a gap, and checking goes on after it.
        view = tracker.view(nowMs: 1000 + ChainTracker.gapAfterMs + 1)
        #expect(view.gaps == 1 && view.missingBatches == 1 && view.checkedThrough == 5 && view.waiting == 0)
        #expect(view.lastProblem == "batch 3 never arrived")
        // A hole filled in time is no gap.
        tracker.add(sequence: 3, link: Self.link(3), atMs: 5000)
        #expect(tracker.view.intact && tracker.view.checkedThrough == 5)
    }

    @Test func aLateBatchTakesItsGapBack() {
        let order: [UInt64] = [1, 2] + (5...UInt64(6 + ChainTracker.maxPending)).map { $0 }
        var tracker = Self.tracker(feeding: order)
        #expect(tracker.view.gaps == 1 && tracker.view.missingBatches == 2)
        tracker.add(sequence: 4, link: Self.link(4), atMs: 2000)
        #expect(tracker.view.gaps == 1 && tracker.view.missingBatches == 1, "batch 3 is still missing")
        tracker.add(sequence: 3, link: Self.link(3), atMs: 2000)
        #expect(tracker.view.gaps == 0 && tracker.view.missingBatches == 0 && tracker.view.intact)
        #expect(tracker.view.lastProblem == "batch 3 arrived after its gap was declared")
        // A resend of a batch checked long ago changes nothing.
        tracker.add(sequence: 2, link: Self.link(2), atMs: 3000)
        #expect(tracker.view.gaps == 0 && tracker.view.missingBatches == 0)
    }

    @Test func tooManyBatchesPastAHoleDeclareItAtOnce() {
        let order: [UInt64] = [1, 2] + (5...UInt64(6 + ChainTracker.maxPending)).map { $0 }
        let view = Self.tracker(feeding: order).view
        #expect(view.gaps == 1 && view.missingBatches == 2 && view.lastProblem == "batches 3 to 4 never arrived", "\(view)")
        #expect(view.checkedThrough == UInt64(6 + ChainTracker.maxPending) && view.mismatches == 0)
    }

    @Test func batchesWithoutAPreviousDigestAreCountedUnchained() {
        var tracker = ChainTracker(epoch: "e", sequence: 1, link: ChainLink(digest: "a", previous: ""))
        tracker.add(sequence: 2, link: ChainLink(digest: "b", previous: ""), atMs: 1)
        tracker.add(sequence: 3, link: ChainLink(digest: "c", previous: "b"), atMs: 1)
        #expect(tracker.view.unchained == 1 && tracker.view.mismatches == 0 && !tracker.view.intact)
    }
}
