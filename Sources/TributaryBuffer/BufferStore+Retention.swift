import Foundation
import Synchronization
import TributaryCore
import TributarySQLite
import TributaryWire
import TributaryCrypto

/// Stage 4, room: the quota's `drop_oldest`, the retention period, and what the file holds.
extension BufferStore {
    /// Frees the oldest unsent readings for the `drop_oldest` policy: the oldest sealed batch
    /// never sent and not being sent, else up to `maxUnsealed` of the oldest unsealed readings. The
    /// count is persisted in the same transaction and reported with the gateway's status.
    /// Returns how many readings were dropped (0: nothing can be dropped now).
    public func dropOldest(maxUnsealed: Int = 1000) throws(SQLiteError) -> DroppedReadings {
        let dropped = try db.withConnection { c throws(SQLiteError) -> DroppedReadings in
            let claimed = inFlight.withLock { $0 }
            return try c.transaction { () throws(SQLiteError) -> DroppedReadings in
                var victim: (sequence: Int64, count: Int64)?
                // Never a batch that was ever sent: the aggregator may have committed it and the
                // answer been lost, and a reading both delivered and counted dropped would make
                // the count a lie.
                try c.forEach("SELECT sequence, reading_count FROM batches WHERE set_aside = 0 AND sent = 0 ORDER BY sequence LIMIT ?",
                              [claimed.count + 1]) { row in
                    if victim == nil, !claimed.contains(UInt64(row.int64(0))) { victim = (row.int64(0), row.int64(1)) }
                }
                if let victim {
                    try c.run("DELETE FROM batches WHERE sequence = ?", victim.sequence)
                    try Self.bump(c, "dropped_total", by: Int(victim.count))
                    return DroppedReadings(sealed: victim.count, sealedBatch: UInt64(victim.sequence), unsealed: 0)
                }
                let count = Int64(try c.run("DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY id LIMIT ?)", maxUnsealed))
                try Self.bump(c, "dropped_total", by: Int(count))
                return DroppedReadings(sealed: 0, sealedBatch: nil, unsealed: count)
            }
        }
        counters.withLock {
            $0.droppedTotal += dropped.total
            $0.unsealedReadings -= dropped.unsealed
            $0.sealedReadings -= dropped.sealed
            if dropped.sealedBatch != nil { $0.sealedBatches -= 1 }
        }
        return dropped
    }

    /// The retention period: deletes unsealed readings received before `cutoffMs`, and sealed
    /// batches whose oldest reading was, as long as they were never sent (one that was may have
    /// been written by the aggregator with its answer lost: it stays and is resent). Counted as
    /// dropped, in the same transaction. Returns (readings, batches) deleted.
    public func expire(receivedBeforeMs cutoffMs: Int64) throws(SQLiteError) -> (readings: Int64, batches: Int64) {
        let expired = try db.withConnection { c throws(SQLiteError) -> (readings: Int64, batches: Int64, sealed: Int64) in
            let claimed = inFlight.withLock { $0 }
            return try c.transaction { () throws(SQLiteError) -> (readings: Int64, batches: Int64, sealed: Int64) in
                var victims: [(sequence: Int64, count: Int64)] = []
                try c.forEach("SELECT sequence, reading_count FROM batches WHERE set_aside = 0 AND sent = 0 AND oldest_received_ms < ? ORDER BY sequence",
                              [cutoffMs]) { row in
                    if !claimed.contains(UInt64(row.int64(0))) { victims.append((row.int64(0), row.int64(1))) }
                }
                for victim in victims { try c.run("DELETE FROM batches WHERE sequence = ?", victim.sequence) }
                let sealed = victims.reduce(0) { $0 + $1.count }
                let unsealed = Int64(try c.run("DELETE FROM readings WHERE received_ms < ?", cutoffMs))
                try Self.bump(c, "dropped_total", by: Int(sealed + unsealed))
                return (sealed + unsealed, Int64(victims.count), sealed)
            }
        }
        counters.withLock {
            $0.droppedTotal += expired.readings
            $0.unsealedReadings -= expired.readings - expired.sealed
            $0.sealedReadings -= expired.sealed
            $0.sealedBatches -= expired.batches
        }
        return (expired.readings, expired.batches)
    }

    /// Receive time of the oldest reading not yet acknowledged, or nil when there is none;
    /// `excluding` leaves out one batch (the one being sent).
    public func oldestUnacknowledgedMs(excluding sequences: Set<UInt64> = []) throws(SQLiteError) -> Int64? {
        try db.withConnection { c throws(SQLiteError) in
            var sealed: Int64?
            try c.forEach("SELECT sequence, oldest_received_ms FROM batches WHERE set_aside = 0 ORDER BY sequence LIMIT ?",
                          [sequences.count + 1]) { row in
                if sealed == nil, !sequences.contains(UInt64(row.int64(0))) { sealed = row.int64(1) }
            }
            let unsealed = try c.scalar("SELECT received_ms FROM readings ORDER BY id LIMIT 1")?.int64
            return [sealed, unsealed].compactMap { $0 }.min()
        }
    }

    /// Bytes the buffer file holds (pages in use).
    public func sizeBytes() throws(SQLiteError) -> Int64 {
        try pageUsage().inUse
    }

    /// What counts against `buffer.max_bytes`: the pages in use but the saved redelivery window
    /// (1-2 MB after a busy minute, kept for a crash of the run that read it). Counted, it
    /// filled a small quota for a whole run, and `drop_oldest` dropped nearly every reading
    /// before it could be sent (attack round 14: 49,440 of 49,500 at 64 KiB).
    public func quotaBytesInUse() throws(SQLiteError) -> Int64 {
        max(0, try sizeBytes() - savedWindowBytes.withLock { $0 })
    }

    /// Bytes of free pages inside the file: room for new readings without growing it.
    public func freeBytesInFile() throws(SQLiteError) -> Int64 {
        try pageUsage().free
    }

    func pageUsage() throws(SQLiteError) -> (inUse: Int64, free: Int64) {
        try db.withConnection { c throws(SQLiteError) in
            let pages = try c.scalar("PRAGMA page_count")?.int64 ?? 0
            let free = try c.scalar("PRAGMA freelist_count")?.int64 ?? 0
            let size = try c.scalar("PRAGMA page_size")?.int64 ?? 4096
            return ((pages - free) * size, free * size)
        }
    }

    /// Caps the file at `pages` pages, so tests meet SQLITE_FULL as on a full disk.
    func limitPagesForTesting(_ pages: Int) throws(SQLiteError) {
        try db.withConnection { c throws(SQLiteError) in _ = try c.execute("PRAGMA max_page_count = \(pages)") }
    }
}
