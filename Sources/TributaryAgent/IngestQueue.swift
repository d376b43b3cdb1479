import TributaryCore
import TributaryRuntime

/// A bounded hand-off from the MQTT network thread to the committer thread.
///
/// `push` blocks while the queue is full: the MQTT thread then reads nothing more and the
/// broker keeps further messages for our persistent session. Nothing is ever dropped here.
///
/// Shutting down has two steps. `drain` first: pushes no longer wait for room (what the
/// network thread holds was already acknowledged to the broker, so it must reach the buffer,
/// and a push waiting for a committer that waits for quota would hang the shutdown), and the
/// committer commits whatever it has, over the quota if need be. Then `close`: no more pushes.
final class IngestQueue<Element>: @unchecked Sendable {
    // @unchecked Sendable: all state is guarded by `condition`.
    private let condition = MonotonicCondition()
    private var items: [Element] = []
    private var head = 0
    private var draining = false
    private var closed = false
    /// How many queued elements wake the committer: 1 while it waits for a group's first, the
    /// group's size while it gathers the rest until its window ends. Waking it for every
    /// message cost a context switch each (a fifth of the agent's CPU at 2,000 messages/s).
    private var wakeCount = 1
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    private var count: Int { items.count - head }

    /// Adds an element, waiting while the queue is full (unless draining). Returns false if
    /// the queue was closed.
    @discardableResult
    func push(_ element: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while count >= capacity && !draining && !closed { condition.wait() }
        guard !closed else { return false }
        items.append(element)
        if count >= wakeCount { condition.broadcast() }
        return true
    }

    /// Waits for a first element (or close), then gathers more for up to `windowMs` (on the
    /// monotonic clock) or until `max` are taken: one group commit's worth. Returns nil once
    /// closed and empty.
    func takeGroup(max: Int, windowMs: Int) -> [Element]? {
        condition.lock()
        defer { condition.unlock() }
        wakeCount = 1
        while count == 0 && !closed { condition.wait() }
        if count == 0 && closed { return nil }
        let deadline = MonotonicClock.nowNanoseconds() + UInt64(Swift.max(windowMs, 0)) * 1_000_000
        wakeCount = Swift.max(max, 1)
        while count < max && !closed && !draining {
            if !condition.wait(untilNanoseconds: deadline) { break }
        }
        wakeCount = 1
        let taken = Array(items[head..<min(items.count, head + max)])
        head += taken.count
        if head > 4096 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        condition.broadcast()
        return taken
    }

    /// The first step of shutting down: pushes stop waiting for room, and `isShuttingDown`
    /// tells the committer to stop waiting for quota.
    func drain() {
        condition.lock()
        draining = true
        condition.broadcast()
        condition.unlock()
    }

    /// No more pushes; `takeGroup` drains what is left, then returns nil.
    func close() {
        condition.lock()
        draining = true
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Draining or closed: the agent is stopping.
    var isShuttingDown: Bool {
        condition.lock()
        defer { condition.unlock() }
        return draining
    }

    var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return count
    }
}
