import Foundation
import Synchronization
import TributaryCore
import TributarySQLite
import TributaryWire
import TributaryCrypto

/// The agent's durable buffer: one SQLite file in WAL mode.
///
/// Readings are appended in group commits. Sealing moves the oldest readings into a batch row
/// whose identity and encoded contents never change afterwards, so every resend is the same
/// batch. A batch row is deleted only when an aggregator acknowledges it.
///
/// One file per stage a reading goes through: `+Schema` (opening the file), `+Ingest`
/// (appending), `+Sealing` (batches and epochs), `+Delivery` (claim, acknowledge, set aside),
/// `+Retention` (the quota, the retention period, sizes). This file holds the state they share.
public final class BufferStore: Sendable {
    /// How hard each commit waits for the disk (`buffer.synchronous` in the agent's config):
    /// `normal` may lose the last commits on a power cut, `full` does not. Seals are always `full`.
    public enum Synchronous: String, Sendable, CaseIterable { case normal, full }

    /// Marks the file as ours (`PRAGMA application_id`), so a foreign file is never overwritten.
    static let applicationID: Int32 = 0x5452_4942  // "TRIB"
    static let formatVersion = 1

    public let path: String
    public let gatewayID: String
    /// Random id made when the file was created, and again when the aggregator shows that the
    /// buffer was rolled back (see `renewEpoch`); part of every batch identity sealed now.
    public var epoch: String { currentEpoch.withLock { $0 } }
    let currentEpoch: Mutex<String>
    /// `synchronous: normal` still seals durably (see `sealOne`).
    let synchronous: Synchronous
    let db: SQLiteDatabase
    let counters: Mutex<Counters>
    /// When groups of unsealed readings arrived, on the monotonic clock: (the group's highest
    /// row id, arrival), oldest first. Sealing by age uses it, so a wall clock stepped back
    /// cannot hold readings unsealed until it catches up. Readings from an earlier run have no
    /// entry and are due at once.
    let arrivals = Mutex<[(lastID: Int64, atMs: Int64)]>([])
    /// Sequences the uploader is sending right now. `dropOldest` never frees these: a batch
    /// counted as dropped must never reach the sink.
    let inFlight = Mutex<Set<UInt64>>([])
    /// Bytes of the redelivery window a stop saved, as stored: kept in the file until the next
    /// stop replaces it (a run killed before then, and a broker crash after, need it), but not
    /// counted against the quota (see `quotaBytesInUse`).
    let savedWindowBytes = Mutex<Int64>(0)

    /// Running totals, persisted in the `counters` table and mirrored here for status reports.
    public struct Counters: Sendable, Equatable {
        public var unsealedReadings: Int64 = 0
        public var sealedReadings: Int64 = 0
        public var sealedBatches: Int64 = 0
        public var setAsideBatches: Int64 = 0
        public var ingestedTotal: Int64 = 0
        public var acknowledgedTotal: Int64 = 0
        /// Payloads ever quarantined: each counted once, when it first was (a replay that
        /// fails again does not count it again). A Prometheus counter, so it never goes down.
        public var quarantinedTotal: Int64 = 0
        /// Payloads the quarantine holds now.
        public var quarantineHeld: Int64 = 0
        /// Payloads released from the quarantine by `quarantine replay` (stored as readings, or
        /// recognised as a copy of one stored already) and deleted by `quarantine purge`.
        public var quarantineReplayedTotal: Int64 = 0
        public var quarantinePurgedTotal: Int64 = 0
        /// Moves with every change to the quarantine (in memory only): when the status's
        /// reasons must be counted again.
        public var quarantineRevision: Int64 = 0
        public var droppedTotal: Int64 = 0
        public var redeliveriesTotal: Int64 = 0
    }

    public init(path: String, gatewayID: String, synchronous: Synchronous = .normal) throws(BufferError) {
        self.path = path
        self.gatewayID = gatewayID
        self.synchronous = synchronous
        do {
            db = try SQLiteDatabase(path: path)
            let (epoch, counters) = try db.withConnection { (c) throws(SQLiteError) -> Result<(String, Counters), BufferError> in
                Result { () throws(BufferError) in try Self.prepare(c, path: path, gatewayID: gatewayID, synchronous: synchronous) }
            }.get()
            currentEpoch = Mutex(epoch)
            self.counters = Mutex(counters)
        } catch let error as BufferError {
            throw error
        } catch let error as SQLiteError {
            throw error.isCorrupt ? .notABuffer(path: path, detail: error.message) : .sqlite(error)
        } catch {
            throw .notABuffer(path: path, detail: "\(error)")
        }
    }

    public func close() { db.close() }

    public var snapshot: Counters { counters.withLock { $0 } }

    // MARK: helpers

    static func bump(_ c: SQLiteConnection, _ name: String, by amount: Int) throws(SQLiteError) {
        guard amount != 0 else { return }
        // An upsert: counters added in later versions have no row in older files.
        try c.run("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", name, amount)
    }

    static func columns(_ value: ReadingValue) -> (Int, Double?, Int64?, String?) {
        switch value {
        case .double(let d): (1, d, nil, nil)
        case .integer(let i): (2, nil, i, nil)
        case .boolean(let b): (3, nil, b ? 1 : 0, nil)
        case .text(let t): (4, nil, nil, t)
        }
    }

    static func value(type: Int64, real: Double, int: Int64, text: String?) -> ReadingValue {
        switch type {
        case 1: .double(real)
        case 2: .integer(int)
        case 3: .boolean(int != 0)
        default: .text(text ?? "")
        }
    }
}

/// What one `dropOldest` call freed.
public struct DroppedReadings: Sendable, Equatable {
    /// Readings of the sealed batch dropped whole, if one was.
    public var sealed: Int64
    public var sealedBatch: UInt64?
    /// Unsealed readings dropped.
    public var unsealed: Int64
    public var total: Int64 { sealed + unsealed }
}

/// A batch as stored: its identity and the exact bytes to send.
public struct SealedBatch: Sendable {
    public let identity: BatchIdentity
    /// The serialized `tributary.v1.Batch`.
    public let payload: [UInt8]
    public let readingCount: Int
    public let attempts: Int
    /// When the agent received the batch's oldest reading.
    public let oldestReceivedMs: Int64
}

/// A payload that could not be decoded, with why.
public struct QuarantinedPayload: Sendable, Equatable {
    public var topic: String
    public var payload: [UInt8]
    public var reason: String
    public var receivedAtMs: Int64

    public init(topic: String, payload: [UInt8], reason: String, receivedAtMs: Int64) {
        self.topic = topic
        self.payload = payload
        self.reason = reason
        self.receivedAtMs = receivedAtMs
    }
}
