import Foundation

/// A bounded hand-off from the MQTT network thread to the committer thread.
///
/// `push` blocks while the queue is full: the MQTT thread then reads nothing more and the
/// broker keeps further messages for our persistent session. Nothing is ever dropped here.
final class IngestQueue<Element>: @unchecked Sendable {
    // @unchecked Sendable: all state is guarded by `condition`.
    private let condition = NSCondition()
    private var items: [Element] = []
    private var head = 0
    private var closed = false
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    private var count: Int { items.count - head }

    /// Adds an element, waiting while the queue is full. Returns false if the queue was closed.
    @discardableResult
    func push(_ element: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while count >= capacity && !closed { condition.wait() }
        guard !closed else { return false }
        items.append(element)
        condition.broadcast()
        return true
    }

    /// Waits for a first element (or close), then gathers more for up to `window` or until
    /// `max` are taken: one group commit's worth. Returns nil once closed and empty.
    func takeGroup(max: Int, window: TimeInterval) -> [Element]? {
        condition.lock()
        defer { condition.unlock() }
        while count == 0 && !closed { condition.wait() }
        if count == 0 && closed { return nil }
        let deadline = Date(timeIntervalSinceNow: window)
        while count < max && !closed {
            if !condition.wait(until: deadline) { break }
        }
        let taken = Array(items[head..<min(items.count, head + max)])
        head += taken.count
        if head > 4096 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        condition.broadcast()
        return taken
    }

    /// No more pushes; `takeGroup` drains what is left, then returns nil.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    var isClosed: Bool {
        condition.lock()
        defer { condition.unlock() }
        return closed
    }

    var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return count
    }
}
