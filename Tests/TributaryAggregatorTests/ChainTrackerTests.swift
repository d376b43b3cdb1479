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

    /// The review's crash: a gap of three declared, then its middle batch first. Each side of the
    /// split was counted off `gaps`, which went below zero and trapped the aggregator after the
    /// sink had committed the batch; the resend trapped it again, forever.
    @Test(arguments: [[3, 2, 4], [3, 4, 2], [2, 4, 3], [4, 2, 3]] as [[UInt64]])
    func aGapFilledInAnyOrderIsTakenBackWhole(_ late: [UInt64]) {
        var tracker = Self.tracker(feeding: [1] + (5...69).map { $0 })
        #expect(tracker.view.gaps == 1 && tracker.view.missingBatches == 3, "\(tracker.view)")
        for n in late { tracker.add(sequence: n, link: Self.link(n), atMs: 2000) }
        #expect(tracker.view.gaps == 0 && tracker.view.missingBatches == 0 && tracker.view.intact, "\(tracker.view)")
        // The middle one first leaves two holes open meanwhile.
        var split = Self.tracker(feeding: [1] + (5...69).map { $0 })
        split.add(sequence: 3, link: Self.link(3), atMs: 2000)
        #expect(split.view.gaps == 2 && split.view.missingBatches == 2, "\(split.view)")
    }

    /// Arbitrary arrival orders, resends and losses, from a seeded generator: nothing traps, the
    /// counts stay within what was sent, and once everything has arrived the chain is whole.
    @Test func anyArrivalOrderKeepsTheCountsSound() {
        var random = SeededGenerator(seed: 0x5EED)
        for round in 0..<400 {
            let count = UInt64.random(in: 1...300, using: &random)
            var arrivals = Array(1...count)
            // Some arrive late (moved far back), some twice.
            arrivals.shuffle(using: &random)
            if Bool.random(using: &random) { arrivals.sort() ; arrivals.swapAt(0, arrivals.count / 2) }
            for _ in 0..<Int.random(in: 0...20, using: &random) {
                arrivals.insert(UInt64.random(in: 1...count, using: &random), at: Int.random(in: 0...arrivals.count, using: &random))
            }
            let first = arrivals[0]
            var tracker = ChainTracker(epoch: "e", sequence: first, link: Self.link(first))
            var clock: Int64 = 0
            for n in arrivals.dropFirst() {
                clock += Int64.random(in: 0...40_000, using: &random)  // sometimes past the gap timeout
                tracker.add(sequence: n, link: Self.link(n), atMs: clock)
                let view = tracker.view(nowMs: clock)
                #expect(view.missingBatches <= count && view.gaps <= view.missingBatches && view.waiting <= count, "round \(round): \(view)")
                #expect(view.checkedThrough <= view.highestSeen && view.highestSeen <= count, "round \(round): \(view)")
            }
            let end = tracker.view(nowMs: clock + ChainTracker.gapAfterMs + 1)
            // Every batch arrived, so whatever was declared was taken back (batches before the
            // first one seen extend the start, or are older than it).
            #expect(end.gaps == 0 && end.missingBatches == 0 && end.waiting == 0 && end.mismatches == 0, "round \(round): \(end)")
            #expect(end.checkedThrough == count, "round \(round): \(end)")
        }
    }

    @Test func sequencesAtTheEdgeOfTheRangeDoNotTrap() {
        var tracker = ChainTracker(epoch: "e", sequence: UInt64.max - 1, link: Self.link(1))
        tracker.add(sequence: .max, link: Self.link(2), atMs: 1)
        tracker.add(sequence: 0, link: Self.link(3), atMs: 1)
        tracker.add(sequence: .max - 2, link: Self.link(4), atMs: .min)
        _ = tracker.view(nowMs: .max)
        _ = tracker.view(nowMs: .min)
        var low = ChainTracker(epoch: "e", sequence: 1, link: Self.link(1))
        low.add(sequence: 0, link: ChainLink(digest: "d0", previous: ""), atMs: .max)
        #expect(low.view.startSequence == 1)
    }
}

/// SplitMix64: the same arrival orders on every run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
