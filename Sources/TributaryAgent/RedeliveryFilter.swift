/// Recognises MQTT messages the agent has already stored.
///
/// QoS 1 is at-least-once: when the broker restarts, it sends again what was in flight to the
/// agent, and a publisher resends what the broker had not acknowledged. A message on the same
/// topic with byte-identical payload that carries its own event time is the same reading
/// again, so it is counted and not stored twice. Payloads without an event time (a plain
/// `21.5`) can repeat legitimately and are never filtered.
///
/// Redeliveries arrive right after a reconnect, so a window of the most recent messages is
/// enough; it is bounded in count and in age, and lives on the committer thread only.
struct RedeliveryFilter {
    private struct Key: Hashable {
        let topic: String
        let payload: [UInt8]
    }

    let capacity: Int
    let maxAgeMs: Int64
    private var seen: [Key: Int64] = [:]
    /// Insertion order, oldest first from `head`, for eviction.
    private var order: [Key] = []
    private var head = 0

    init(capacity: Int = 8192, maxAgeMs: Int64 = 300_000) {
        self.capacity = capacity
        self.maxAgeMs = maxAgeMs
    }

    /// True when the same topic and payload were seen within the window; otherwise remembers them.
    mutating func isRedelivery(topic: String, payload: [UInt8], nowMs: Int64) -> Bool {
        let key = Key(topic: topic, payload: payload)
        if let seenAt = seen[key], nowMs - seenAt <= maxAgeMs { return true }
        seen[key] = nowMs
        order.append(key)
        evict(nowMs: nowMs)
        return false
    }

    private mutating func evict(nowMs: Int64) {
        while head < order.count {
            let oldest = order[head]
            let tooMany = order.count - head > capacity
            guard tooMany || nowMs - (seen[oldest] ?? nowMs) > maxAgeMs else { break }
            seen[oldest] = nil
            head += 1
        }
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    var count: Int { seen.count }
}
