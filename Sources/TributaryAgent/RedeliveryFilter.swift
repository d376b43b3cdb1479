/// Recognises MQTT messages the agent has already stored.
///
/// QoS 1 is at-least-once: when the broker restarts, it sends again what was in flight to the
/// agent, and a publisher resends what the broker had not acknowledged. A message on the same
/// topic with byte-identical payload that carries its own event time is the same reading
/// again, so it is counted and not stored twice. Payloads without an event time (a plain
/// `21.5`) can repeat legitimately and are never filtered.
///
/// Redeliveries arrive right after a reconnect, so a window of the most recent messages is
/// enough; it is bounded in count and in age (on the monotonic clock: `nowMs` is a
/// `MonotonicClock` reading), and lives on the committer thread only.
struct RedeliveryFilter {
    /// A message, hashed once on the way in: the dictionary then hashes only the 64-bit
    /// digest (it would otherwise run SipHash over topic and payload on every lookup, insert
    /// and eviction), while equality still compares the bytes, so a digest collision can never
    /// make a new reading look like a redelivery.
    private struct Key: Hashable {
        let digest: UInt64
        let topic: String
        let payload: [UInt8]

        init(topic: String, payload: [UInt8]) {
            self.topic = topic
            self.payload = payload
            var digest = WordHash()
            var topic = topic
            topic.withUTF8 { digest.add(UnsafeRawBufferPointer($0)) }
            payload.withUnsafeBytes { digest.add($0) }
            self.digest = digest.value
        }

        func hash(into hasher: inout Hasher) { hasher.combine(digest) }

        static func == (a: Key, b: Key) -> Bool {
            a.digest == b.digest && a.payload == b.payload && a.topic == b.topic
        }
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

/// A 64-bit hash taking 8 bytes per multiply (Hasher takes `[UInt8]` a byte at a time, which
/// the ingest profile showed). Each part ends with its length, so "a" + "bc" and "ab" + "c"
/// differ. Plenty to spread keys over a dictionary whose equality check has the last word.
/// Seeded per process, so collisions cannot be prepared in advance to slow the dictionary down.
private struct WordHash {
    private static let seed = UInt64.random(in: .min ... .max)
    private(set) var value: UInt64 = seed

    private mutating func mix(_ word: UInt64) {
        value = (value ^ word) &* 0xFF51_AFD7_ED55_8CCD
        value ^= value >> 32
    }

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset + 8 <= bytes.count {
            mix(bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset += 8
        }
        var tail = UInt64(bytes.count) << 56
        var shift: UInt64 = 0
        while offset < bytes.count {
            tail ^= UInt64(bytes[offset]) << shift
            shift += 8
            offset += 1
        }
        mix(tail)
    }
}
