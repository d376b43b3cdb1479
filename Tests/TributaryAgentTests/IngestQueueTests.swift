import Foundation
import Testing
@testable import TributaryAgent

/// The hand-off between the MQTT thread and the committer: the committer is woken only for a
/// group's first element and for a full group, so these check that every element still arrives,
/// in order, in groups no larger than asked, and that a full queue holds the pusher back.
@Suite("Ingest queue")
struct IngestQueueTests {
    /// A group of `max` taken with a 10 s window, and whether it came well before the window's end.
    private func takeFullGroup(_ queue: IngestQueue<Int>, max: Int) -> (group: [Int]?, early: Bool) {
        let started = ContinuousClock.now
        let group = queue.takeGroup(max: max, windowMs: 10_000)
        return (group, ContinuousClock.now - started < .seconds(5))
    }

    @Test func aGroupEndsWhenFullWithoutWaitingOutItsWindow() {
        let queue = IngestQueue<Int>(capacity: 100)
        for i in 0..<10 { queue.push(i) }
        let (group, early) = takeFullGroup(queue, max: 10)
        #expect(group == Array(0..<10))
        #expect(early, "a full group is taken at once")
    }

    @Test func aGroupFilledWhileGatheringEndsBeforeItsWindow() {
        let queue = IngestQueue<Int>(capacity: 100)
        let pusher = Thread {
            for i in 0..<5 {
                queue.push(i)
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
        pusher.start()
        let (group, early) = takeFullGroup(queue, max: 5)
        #expect(group == Array(0..<5))
        #expect(early, "woken by the push that filled the group, not by the window's end")
    }

    @Test func aPartGroupIsTakenWhenItsWindowEnds() {
        let queue = IngestQueue<Int>(capacity: 100)
        queue.push(1)
        queue.push(2)
        #expect(queue.takeGroup(max: 10, windowMs: 5) == [1, 2])
    }

    @Test func everyElementArrivesOnceInOrderAcrossThreads() {
        let queue = IngestQueue<Int>(capacity: 16)
        let total = 20_000
        let pusher = Thread {
            for i in 0..<total { queue.push(i) }
            queue.close()
        }
        pusher.start()
        var received: [Int] = []
        while let group = queue.takeGroup(max: 7, windowMs: 1) {
            #expect(group.count <= 7)
            received += group
        }
        #expect(received == Array(0..<total), "nothing lost, doubled or reordered; the full queue held the pusher back")
    }

    @Test func closeWakesAWaitingCommitter() {
        let queue = IngestQueue<Int>(capacity: 4)
        let closer = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            queue.close()
        }
        closer.start()
        #expect(queue.takeGroup(max: 4, windowMs: 5) == nil)
    }
}
