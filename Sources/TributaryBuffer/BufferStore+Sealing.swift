import Foundation
import Synchronization
import TributaryCore
import TributaryRuntime
import TributarySQLite
import TributaryWire
import TributaryCrypto

/// Stage 2, sealing: the oldest readings become a batch whose identity, bytes and place in
/// the hash chain never change; and a new epoch when the aggregator shows the buffer was rolled
/// back.
extension BufferStore {
    /// Seals batches while the unsealed readings are due: at least `maxReadings` of them, or
    /// the oldest has waited `maxAgeMs` (on the monotonic clock). Returns how many batches
    /// were sealed.
    @discardableResult
    public func sealDueBatches(maxReadings: Int, maxAgeMs: Int, monotonicNowMs: Int64 = MonotonicClock.nowMs()) throws(SQLiteError) -> Int {
        var sealed = 0
        while true {
            let unsealed = counters.withLock { $0.unsealedReadings }
            guard unsealed > 0 else { return sealed }
            if unsealed < maxReadings {
                let oldestID = try db.withConnection { c throws(SQLiteError) in
                    try c.scalar("SELECT id FROM readings ORDER BY id LIMIT 1")?.int64
                }
                guard let oldestID, monotonicNowMs.saturatingMinus(arrival(ofRow: oldestID)) >= maxAgeMs else { return sealed }
            }
            guard try sealOne(maxReadings: maxReadings, nowMs: WallClock.nowMs()) > 0 else { return sealed }
            sealed += 1
        }
    }

    /// When the group holding row `id` arrived (monotonic), forgetting older groups (sealed,
    /// dropped or expired); `Int64.min` for readings of an earlier run.
    func arrival(ofRow id: Int64) -> Int64 {
        arrivals.withLock { arrivals in
            let gone = arrivals.prefix { $0.lastID < id }.count
            arrivals.removeFirst(gone)
            return arrivals.first?.atMs ?? .min
        }
    }

    /// Seals the oldest unsealed readings (up to `maxReadings`) into one batch. The seal is
    /// durable before anyone can send the batch, whatever `synchronous` says: a power cut that
    /// rolled back a sealed and delivered batch would have the buffer reuse its identity for
    /// other readings (one fsync per batch; `normal` otherwise skips them).
    func sealOne(maxReadings: Int, nowMs: Int64) throws(SQLiteError) -> Int {
        let count = try db.withConnection { c throws(SQLiteError) -> Int in
            try durably(c) { () throws(SQLiteError) -> Int in try c.transaction { () throws(SQLiteError) -> Int in
                var readings: [Reading] = []
                var lastID: Int64 = 0
                var oldestReceived = Int64.max
                var cost = BatchCost(), full = false
                try c.forEach("""
                    SELECT id, gateway_id, sensor_id, metric, topic, time_ms, received_ms,
                           value_type, value_real, value_int, value_text, unit, labels
                    FROM readings ORDER BY id LIMIT ?
                    """, [maxReadings]) { row in
                    guard !full else { return }
                    let received = row.int64(6)
                    let reading = Reading(
                        gatewayID: row.string(1) ?? "", sensorID: row.string(2) ?? "", metric: row.string(3) ?? "",
                        topic: row.string(4) ?? "", timeMs: row.int64(5), receivedAtMs: received,
                        value: Self.value(type: row.int64(7), real: row.double(8), int: row.int64(9), text: row.string(10)),
                        unit: row.string(11), labels: LabelsJSON.decode(row.string(12)))
                    // Within what an aggregator takes of one batch (rows, and stored against
                    // carried), however long or repetitive the readings.
                    guard cost.add(reading, within: Self.batchLimits) else {
                        full = true
                        return
                    }
                    lastID = row.int64(0)
                    oldestReceived = min(oldestReceived, received)
                    readings.append(reading)
                }
                guard !readings.isEmpty else { return 0 }
                try seal(c, readings, epoch: epoch, oldestReceivedMs: oldestReceived, nowMs: nowMs)
                try c.run("DELETE FROM readings WHERE id <= ?", lastID)
                return readings.count
            } }
        }
        if count > 0 {
            counters.withLock {
                $0.unsealedReadings -= Int64(count)
                $0.sealedReadings += Int64(count)
                $0.sealedBatches += 1
            }
        }
        return count
    }

    /// The bounds a sealed batch keeps: the aggregator's defaults, rows within a quarter of its
    /// default (so an aggregator configured lower takes them too).
    static let batchLimits: BatchLimits = {
        var limits = BatchLimits()
        limits.maxExpandedBytes = BatchLimits.agentMaxExpandedBytes
        return limits
    }()

    /// Makes `readings` the next batch of the current epoch, inside the caller's transaction:
    /// the next sequence, chained to the epoch's head, which moves to it.
    func seal(_ c: SQLiteConnection, _ readings: [Reading], epoch: String, oldestReceivedMs: Int64, nowMs: Int64) throws(SQLiteError) {
        let sequence = try c.scalar("SELECT value FROM counters WHERE name = 'next_sequence'")?.int64 ?? 1
        let identity = BatchIdentity(gatewayID: gatewayID, epoch: epoch, sequence: UInt64(sequence))
        // The batch's own sealed_at is its newest reading's receive time, not the clock: the same
        // readings sealed again under the same identity (a buffer file put back to a copy taken
        // before they were sealed) are then the same bytes, answered duplicate, not 409.
        let sealedAt = readings.map(\.receivedAtMs).max() ?? nowMs
        var batch = BatchCodec.encode(identity: identity, readings: readings, sealedAtMs: sealedAt)
        // The chain's head moves in this transaction, with the batch that becomes it.
        let head = try c.scalar("SELECT value FROM meta WHERE key = 'chain_head'")?.string
        batch.previousDigest = Data(head.flatMap(BatchChain.bytes(hex:)) ?? [])
        let payload: [UInt8]
        do {
            payload = try batch.serializedBytes()
        } catch {
            // Encoding a message we built cannot fail; if it ever does, keep the readings.
            throw SQLiteError(code: 1, message: "cannot encode batch \(identity): \(error)", path: path, sql: nil)
        }
        try c.run("INSERT INTO meta VALUES ('chain_head', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                  BatchChain.hex(BatchChain.digest(of: payload)))
        try c.run("INSERT INTO batches (sequence, epoch, payload, reading_count, oldest_received_ms, sealed_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                  sequence, epoch, payload, readings.count, oldestReceivedMs, nowMs)
        try Self.bump(c, "next_sequence", by: 1)
    }

    /// Runs `body` with `synchronous = FULL`, so its commit is on disk when it returns.
    func durably<T>(_ c: SQLiteConnection, _ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        guard synchronous == .normal else { return try body() }
        try c.execute("PRAGMA synchronous = FULL")
        defer { _ = try? c.execute("PRAGMA synchronous = NORMAL") }
        return try body()
    }

    /// What `renewEpoch` did.
    public struct EpochRenewal: Sendable, Equatable {
        /// The epoch started now, nil when the current one was already new (an earlier batch's
        /// refusal renewed it).
        public var newEpoch: String?
        /// The batches resealed, as (old identity, new identity), in their old order.
        public var resealed: [(old: BatchIdentity, new: BatchIdentity)]

        public static func == (a: Self, b: Self) -> Bool {
            a.newEpoch == b.newEpoch && a.resealed.map(\.old) == b.resealed.map(\.old) && a.resealed.map(\.new) == b.resealed.map(\.new)
        }
    }

    /// The aggregator holds other readings under batch `sequence`'s identity (409): the buffer
    /// was rolled back to an earlier state (an image restored, a VM snapshot, a power cut
    /// before the seal reached the disk) after the aggregator had written batches it no longer
    /// has, and is reusing their identities. Every identity of this epoch from here on may be
    /// taken, so a new epoch starts, and this batch and the epoch's batches never sent are
    /// resealed under it with the same readings. Batches sent already stay as they are: the
    /// aggregator may have them, and each one it refuses comes back here. Returns nil when the
    /// batch is gone (acknowledged or set aside meanwhile).
    public func renewEpoch(resealing sequence: UInt64, nowMs: Int64 = WallClock.nowMs()) throws(SQLiteError) -> EpochRenewal? {
        let renewal = try db.withConnection { c throws(SQLiteError) -> EpochRenewal? in
            try durably(c) { () throws(SQLiteError) -> EpochRenewal? in try c.transaction { () throws(SQLiteError) -> EpochRenewal? in
                guard let refusedEpoch = try c.scalar("SELECT epoch FROM batches WHERE sequence = ? AND set_aside = 0", Int64(sequence))?.string else {
                    return nil
                }
                var victims: [Int64] = [Int64(sequence)]
                var renewal = EpochRenewal(newEpoch: nil, resealed: [])
                var target = epoch
                if refusedEpoch == target {
                    let fresh = UUID().uuidString.lowercased()
                    try c.run("UPDATE meta SET value = ? WHERE key = 'epoch'", fresh)
                    // The new epoch is a new chain.
                    try c.run("DELETE FROM meta WHERE key = 'chain_head'")
                    try Self.bump(c, "epoch_renewals", by: 1)
                    try c.forEach("SELECT sequence FROM batches WHERE epoch = ? AND sent = 0 AND set_aside = 0 AND sequence != ? ORDER BY sequence",
                                  [refusedEpoch, Int64(sequence)]) { row in victims.append(row.int64(0)) }
                    victims.sort()
                    target = fresh
                    renewal.newEpoch = fresh
                }
                for victim in victims {
                    guard let row = try c.query("SELECT epoch, payload, oldest_received_ms FROM batches WHERE sequence = ?", victim).first else { continue }
                    let readings: [Reading]
                    do {
                        readings = try BatchCodec.decode(try Tributary_V1_Batch(serializedBytes: row[1].bytes ?? []))
                    } catch {
                        throw SQLiteError(code: 1, message: "cannot reseal batch \(victim): it does not decode: \(error)", path: path, sql: nil)
                    }
                    let next = try c.scalar("SELECT value FROM counters WHERE name = 'next_sequence'")?.int64 ?? 1
                    try c.run("DELETE FROM batches WHERE sequence = ?", victim)
                    try seal(c, readings, epoch: target, oldestReceivedMs: row[2].int64 ?? nowMs, nowMs: nowMs)
                    renewal.resealed.append((BatchIdentity(gatewayID: gatewayID, epoch: row[0].string ?? "", sequence: UInt64(victim)),
                                             BatchIdentity(gatewayID: gatewayID, epoch: target, sequence: UInt64(next))))
                }
                return renewal
            } }
        }
        // Only once committed: a failed transaction leaves the stored epoch as it was.
        if let fresh = renewal?.newEpoch { currentEpoch.withLock { $0 = fresh } }
        return renewal
    }
}
