import Foundation
import Synchronization
import TributaryCore
import TributarySQLite
import TributaryWire
import TributaryCrypto

/// Stage 3, delivery: the uploader claims sealed batches, and each ends acknowledged (deleted)
/// or set aside (kept, out of the send queue).
extension BufferStore {
    /// Claims up to `limit` of the oldest sealed batches not set aside and not already being
    /// sent, as they must be sent (unchanged on every resend). Each claim ends with `release`.
    /// With `forSending`, they are marked sent before anyone sends them: from then on the
    /// aggregator may hold them, so the quota and the retention period never drop them.
    public func claimBatches(limit: Int, forSending: Bool = true) throws(SQLiteError) -> [SealedBatch] {
        // Claiming inside `withConnection` keeps it atomic with `dropOldest`, which runs there too.
        try db.withConnection { c throws(SQLiteError) in
            try inFlight.withLock { (claimed) throws(SQLiteError) -> [SealedBatch] in
                var batches: [SealedBatch] = []
                try c.forEach("SELECT sequence, payload, reading_count, attempts, oldest_received_ms, epoch FROM batches WHERE set_aside = 0 ORDER BY sequence LIMIT ?",
                              [limit + claimed.count]) { row in
                    let sequence = UInt64(row.int64(0))
                    guard batches.count < limit, !claimed.contains(sequence) else { return }
                    batches.append(SealedBatch(
                        identity: BatchIdentity(gatewayID: gatewayID, epoch: row.string(5) ?? epoch, sequence: sequence),
                        payload: row[1].bytes ?? [], readingCount: Int(row.int64(2)), attempts: Int(row.int64(3)),
                        oldestReceivedMs: row.int64(4)))
                }
                if forSending, !batches.isEmpty {
                    let list = batches.map { String($0.identity.sequence) }.joined(separator: ",")
                    try c.execute("UPDATE batches SET sent = 1 WHERE sent = 0 AND sequence IN (\(list))")
                }
                claimed.formUnion(batches.map(\.identity.sequence))
                return batches
            }
        }
    }

    /// Ends claims made by `claimBatches`, whatever became of the batches.
    public func release(_ sequences: [UInt64]) {
        inFlight.withLock { $0.subtract(sequences) }
    }

    /// The oldest sealed batch not set aside, without claiming it (tests and tools).
    public func oldestSealedBatch() throws(SQLiteError) -> SealedBatch? {
        let batch = try claimBatches(limit: 1, forSending: false).first
        if let batch { release([batch.identity.sequence]) }
        return batch
    }

    public func recordAttempt(_ sequence: UInt64, error: String?) throws(SQLiteError) {
        try db.withConnection { c throws(SQLiteError) in
            try c.run("UPDATE batches SET attempts = attempts + 1, sent = 1, last_error = ? WHERE sequence = ?", error, Int64(sequence))
        }
    }

    /// The aggregator has the batch (accepted now or before): its readings leave the buffer.
    public func acknowledge(_ sequence: UInt64) throws(SQLiteError) {
        let count = try db.withConnection { c throws(SQLiteError) -> Int64 in
            try c.transaction { () throws(SQLiteError) -> Int64 in
                guard let count = try c.scalar("SELECT reading_count FROM batches WHERE sequence = ? AND set_aside = 0", Int64(sequence))?.int64 else {
                    return 0
                }
                try c.run("DELETE FROM batches WHERE sequence = ?", Int64(sequence))
                try Self.bump(c, "acknowledged_total", by: Int(count))
                return count
            }
        }
        guard count > 0 else { return }
        counters.withLock {
            $0.sealedReadings -= count
            $0.sealedBatches -= 1
            $0.acknowledgedTotal += count
        }
    }

    /// The aggregator refused the batch for good: keep it on disk, out of the send queue.
    public func setAside(_ sequence: UInt64, reason: String) throws(SQLiteError) {
        let count = try db.withConnection { c throws(SQLiteError) -> Int64 in
            let count = try c.scalar("SELECT reading_count FROM batches WHERE sequence = ? AND set_aside = 0", Int64(sequence))?.int64 ?? 0
            try c.run("UPDATE batches SET set_aside = 1, last_error = ? WHERE sequence = ?", reason, Int64(sequence))
            return count
        }
        guard count > 0 else { return }
        counters.withLock {
            $0.sealedReadings -= count
            $0.sealedBatches -= 1
            $0.setAsideBatches += 1
        }
    }
}
