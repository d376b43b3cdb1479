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
/// is kept as 128 bits of SHA-256 over its topic and payload, in a ring of arrival order with an
/// open-addressing index into it: 32-40 bytes of memory a message, 2 MB for the default window
/// (a `Dictionary` with an eviction queue beside it took 64-96). Lives on the committer thread only.
struct RedeliveryFilter {
    /// 128 bits of SHA-256(topic, 0, payload): a collision, which would make a new reading look
    /// like a redelivery, has odds of about 2^-128 per pair.
    private struct Key: Equatable {
        let high: UInt64
        let low: UInt64

        init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }

        init(topic: String, payload: [UInt8]) {
            var hasher = SHA256()
            var topic = topic
            topic.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
            withUnsafeBytes(of: UInt8(0)) { hasher.update(bufferPointer: $0) }
            payload.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            (high, low) = hasher.finalize().withUnsafeBytes { digest in
                (UInt64(bigEndian: digest.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                 UInt64(bigEndian: digest.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
        }

        /// The saved form: 16 bytes, big-endian.
        func append(to bytes: inout [UInt8]) {
            withUnsafeBytes(of: high.bigEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: low.bigEndian) { bytes.append(contentsOf: $0) }
        }

        /// The digest's bits are uniform, so any of them make a good home slot.
        func home(_ mask: Int) -> Int { Int(truncatingIfNeeded: low) & mask }
    }

    static let defaultCapacity = 65_536
    let capacity: Int
    let maxAgeMs: Int64

    // The ring: arrival order, oldest at `head`, `live` entries. Its storage grows by doubling up
    // to `capacity`, so a small window or a quiet gateway pays for what it holds.
    private var keys: [Key] = []
    private var times: [Int64] = []
    private var head = 0
    private var live = 0

    /// Linear probing over ring positions (position + 1; 0 is empty), at most half full. A key
    /// seen again after its window points at its newer entry; the older entry, when it leaves
    /// the ring, finds the index pointing elsewhere and leaves it alone.
    private var slots: [Int32] = []
    private var indexed = 0

    init(capacity: Int = RedeliveryFilter.defaultCapacity, maxAgeMs: Int64 = 300_000) {
        precondition(capacity > 0 && capacity < Int(Int32.max) / 2)
        self.capacity = capacity
        self.maxAgeMs = maxAgeMs
    }

    /// True when the same topic and payload were seen within the window; otherwise remembers them.
    mutating func isRedelivery(topic: String, payload: [UInt8], nowMs: Int64) -> Bool {
        let key = Key(topic: topic, payload: payload)
        if let position = position(of: key), nowMs - times[position] <= maxAgeMs { return true }
        remember(key, nowMs: nowMs)
        return false
    }

    /// How many distinct messages the window holds.
    var count: Int { indexed }

    /// The keys seen in the last `withinMs`, oldest first, 16 bytes each. A stopping agent
    /// saves them in its buffer and the next start takes them back: the broker sends again
    /// what it had not read the PUBACKs of (a broker stalled past the agent's stop grace reads
    /// none: 259 of 76,000 readings doubled), and a restarted agent must know them.
    func saved(nowMs: Int64, withinMs: Int64 = 60_000) -> [UInt8] {
        var bytes: [UInt8] = []
        for offset in 0..<live {
            let position = (head + offset) % keys.count
            guard nowMs - times[position] <= withinMs, self.position(of: keys[position]) == position else { continue }
            keys[position].append(to: &bytes)
        }
        return bytes
    }

    /// One message's key in the saved form (16 bytes), for what remembers it outside the window.
    static func savedKey(topic: String, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        Key(topic: topic, payload: payload).append(to: &bytes)
        return bytes
    }

    /// Takes back what `saved` gave, as seen at `nowMs`.
    mutating func restore(_ saved: [UInt8], nowMs: Int64) {
        saved.withUnsafeBytes { raw in
            var offset = 0
            while offset + 16 <= raw.count {
                remember(Key(high: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
                             low: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))),
                         nowMs: nowMs)
                offset += 16
            }
        }
    }

    // MARK: The ring

    private mutating func remember(_ key: Key, nowMs: Int64) {
        while live > 0, nowMs - times[head] > maxAgeMs { evictOldest() }
        if live == capacity { evictOldest() }
        if live == keys.count { grow() }
        let position = (head + live) % keys.count
        keys[position] = key
        times[position] = nowMs
        live += 1
        index(key, at: position)
    }

    private mutating func evictOldest() {
        let key = keys[head]
        if let slot = slot(of: key), Int(slots[slot]) - 1 == head { unindex(slot) }
        head = (head + 1) % keys.count
        live -= 1
    }

    /// Doubles the ring (up to `capacity`), oldest first from position 0, and indexes it again.
    private mutating func grow() {
        let size = min(capacity, max(16, keys.count * 2))
        let order = (0..<live).map { (head + $0) % max(keys.count, 1) }
        let placeholder = Key(high: 0, low: 0)
        var newKeys = [Key](repeating: placeholder, count: size)
        var newTimes = [Int64](repeating: 0, count: size)
        for (to, from) in order.enumerated() {
            newKeys[to] = keys[from]
            newTimes[to] = times[from]
        }
        keys = newKeys
        times = newTimes
        head = 0
        var slotCount = 16
        while slotCount < size * 2 { slotCount *= 2 }
        slots = [Int32](repeating: 0, count: slotCount)
        indexed = 0
        // Oldest first, so a key in the ring twice ends up pointing at its newer entry.
        for position in 0..<live { index(keys[position], at: position) }
    }

    // MARK: The index

    private func slot(of key: Key) -> Int? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var slot = key.home(mask)
        while slots[slot] != 0 {
            if keys[Int(slots[slot]) - 1] == key { return slot }
            slot = (slot + 1) & mask
        }
        return nil
    }

    private func position(of key: Key) -> Int? {
        slot(of: key).map { Int(slots[$0]) - 1 }
    }

    private mutating func index(_ key: Key, at position: Int) {
        let mask = slots.count - 1
        var slot = key.home(mask)
        while slots[slot] != 0 {
            if keys[Int(slots[slot]) - 1] == key {
                slots[slot] = Int32(position + 1)
                return
            }
            slot = (slot + 1) & mask
        }
        slots[slot] = Int32(position + 1)
        indexed += 1
    }

    /// Backward-shift deletion: later entries of the probe run move up, so no tombstones.
    private mutating func unindex(_ emptied: Int) {
        let mask = slots.count - 1
        var hole = emptied
        var next = emptied
        while true {
            next = (next + 1) & mask
            guard slots[next] != 0 else { break }
            let home = keys[Int(slots[next]) - 1].home(mask)
            // An entry whose home lies cyclically in (hole, next] is where it may be.
            let staysPut = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if staysPut { continue }
            slots[hole] = slots[next]
            hole = next
        }
        slots[hole] = 0
        indexed -= 1
    }
}
