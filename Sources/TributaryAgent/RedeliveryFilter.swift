import Crypto

/// Recognises MQTT messages the agent has already stored.
///
/// QoS 1 is at-least-once: when the broker restarts, it sends again what was in flight to the
/// agent; a broker that crashed sends again everything it delivered since it last saved its
/// state (every `autosave_interval`), which during a backlog's drain is tens of thousands of
/// messages; and a publisher resends what the broker had not acknowledged. A message on the same
/// topic with byte-identical payload that carries its own event time is the same reading again,
/// so it is counted and not stored twice. Payloads without an event time (a plain `21.5`) can
/// repeat legitimately and are never filtered.
///
/// Redeliveries come soon after the original, so a window of recent messages is enough: the
/// last `capacity` messages (65,536 by default, `buffer.redelivery_window`) seen in the last
/// `maxAgeMs` (5 minutes), on the monotonic clock (`nowMs` is a `MonotonicClock` reading). Each
/// is kept as 128 bits of SHA-256 over its topic and payload, about 64 bytes of memory a message:
/// 4 MB for the default window. Lives on the committer thread only.
struct RedeliveryFilter {
    /// 128 bits of SHA-256(topic, 0, payload): a collision, which would make a new reading look
    /// like a redelivery, has odds of about 2^-128 per pair.
    private struct Key: Hashable {
        let high: UInt64
        let low: UInt64

        init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }

        init(topic: String, payload: [UInt8]) {
            var hasher = SHA256()
            hasher.update(data: Array(topic.utf8))
            hasher.update(data: [0])
            hasher.update(data: payload)
            let digest = Array(hasher.finalize())
            high = digest[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            low = digest[8..<16].reduce(0) { $0 << 8 | UInt64($1) }
        }
    }

    static let defaultCapacity = 65_536
    let capacity: Int
    let maxAgeMs: Int64
    private var seen: [Key: Int64] = [:]
    /// Insertion order with each insertion's time, oldest first from `head`, for eviction.
    private var order: [(key: Key, atMs: Int64)] = []
    private var head = 0

    init(capacity: Int = RedeliveryFilter.defaultCapacity, maxAgeMs: Int64 = 300_000) {
        self.capacity = capacity
        self.maxAgeMs = maxAgeMs
    }

    /// True when the same topic and payload were seen within the window; otherwise remembers them.
    mutating func isRedelivery(topic: String, payload: [UInt8], nowMs: Int64) -> Bool {
        let key = Key(topic: topic, payload: payload)
        if let seenAt = seen[key], nowMs - seenAt <= maxAgeMs { return true }
        seen[key] = nowMs
        order.append((key, nowMs))
        evict(nowMs: nowMs)
        return false
    }

    private mutating func evict(nowMs: Int64) {
        while head < order.count {
            let oldest = order[head]
            let tooMany = order.count - head > capacity
            guard tooMany || nowMs - oldest.atMs > maxAgeMs else { break }
            // Only if not seen again since (then a later entry in `order` stands for it).
            if seen[oldest.key] == oldest.atMs { seen[oldest.key] = nil }
            head += 1
        }
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    var count: Int { seen.count }

    /// The keys seen in the last `withinMs`, oldest first, 16 bytes each. A stopping agent
    /// saves them in its buffer and the next start takes them back: the broker sends again
    /// what it had not read the PUBACKs of (a broker stalled past the agent's stop grace reads
    /// none: 259 of 76,000 readings doubled), and a restarted agent must know them.
    func saved(nowMs: Int64, withinMs: Int64 = 60_000) -> [UInt8] {
        var bytes: [UInt8] = []
        for entry in order[head...] where nowMs - entry.atMs <= withinMs && seen[entry.key] == entry.atMs {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: entry.key.high >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: entry.key.low >> UInt64(shift))) }
        }
        return bytes
    }

    /// Takes back what `saved` gave, as seen at `nowMs`.
    mutating func restore(_ saved: [UInt8], nowMs: Int64) {
        var offset = 0
        while offset + 16 <= saved.count {
            let high = saved[offset..<offset + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = saved[offset + 8..<offset + 16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let key = Key(high: high, low: low)
            seen[key] = nowMs
            order.append((key, nowMs))
            offset += 16
        }
        evict(nowMs: nowMs)
    }
}
