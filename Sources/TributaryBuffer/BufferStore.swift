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
    private let currentEpoch: Mutex<String>
    /// `synchronous: normal` still seals durably (see `sealOne`).
    private let synchronous: Synchronous
    private let db: SQLiteDatabase
    private let counters: Mutex<Counters>
    /// When groups of unsealed readings arrived, on the monotonic clock: (the group's highest
    /// row id, arrival), oldest first. Sealing by age uses it, so a wall clock stepped back
    /// cannot hold readings unsealed until it catches up. Readings from an earlier run have no
    /// entry and are due at once.
    private let arrivals = Mutex<[(lastID: Int64, atMs: Int64)]>([])
    /// Sequences the uploader is sending right now. `dropOldest` never frees these: a batch
    /// counted as dropped must never reach the sink.
    private let inFlight = Mutex<Set<UInt64>>([])

    /// Running totals, persisted in the `counters` table and mirrored here for status reports.
    public struct Counters: Sendable, Equatable {
        public var unsealedReadings: Int64 = 0
        public var sealedReadings: Int64 = 0
        public var sealedBatches: Int64 = 0
        public var setAsideBatches: Int64 = 0
        public var ingestedTotal: Int64 = 0
        public var acknowledgedTotal: Int64 = 0
        public var quarantinedTotal: Int64 = 0
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

    // MARK: opening

    private static func prepare(_ c: SQLiteConnection, path: String, gatewayID: String, synchronous: Synchronous) throws(BufferError) -> (String, Counters) {
        do {
            let appID = Int32(truncatingIfNeeded: try c.scalar("PRAGMA application_id")?.int64 ?? 0)
            let tableCount = try c.scalar("SELECT count(*) FROM sqlite_master")?.int64 ?? 0
            if appID != applicationID && (appID != 0 || tableCount > 0) {
                throw BufferError.notABuffer(path: path, detail: "application_id \(appID), \(tableCount) schema objects")
            }
            let check = try c.scalar("PRAGMA quick_check")?.string ?? "no answer"
            guard check == "ok" else { throw BufferError.corrupt(path: path, detail: check) }
            try c.execute("PRAGMA journal_mode = WAL")
            try c.execute("PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
            // A small WAL (1 MiB) keeps the data in the main file, where freed pages are reused,
            // and stays well inside the disk reserve.
            try c.execute("PRAGMA wal_autocheckpoint = 256")
            if tableCount == 0 {
                try create(c, gatewayID: gatewayID)
            }
            try addSentColumn(c)
            // The last payload stored per topic, for retained messages (see `IngestService`).
            try c.execute("CREATE TABLE IF NOT EXISTS topic_payloads (topic TEXT PRIMARY KEY, digest INTEGER NOT NULL) WITHOUT ROWID")
            let meta = Dictionary(uniqueKeysWithValues: try c.query("SELECT key, value FROM meta").compactMap { row -> (String, String)? in
                guard let k = row[0].string, let v = row[1].string else { return nil }
                return (k, v)
            })
            let version = Int(meta["format_version"] ?? "") ?? 0
            guard version <= formatVersion else { throw BufferError.newerFormat(path: path, version: version) }
            guard let owner = meta["gateway_id"], let epoch = meta["epoch"] else {
                throw BufferError.notABuffer(path: path, detail: "meta table lacks gateway_id or epoch")
            }
            guard GatewayID.same(owner, gatewayID) else { throw BufferError.foreignGateway(path: path, owner: owner, expected: gatewayID) }
            try addEpochColumn(c, epoch: epoch)
            return (epoch, try loadCounters(c))
        } catch let error as BufferError {
            throw error
        } catch let error as SQLiteError {
            throw error.isCorrupt ? .corrupt(path: path, detail: error.message) : .sqlite(error)
        } catch {
            throw .notABuffer(path: path, detail: "\(error)")
        }
    }

    private static func create(_ c: SQLiteConnection, gatewayID: String) throws(SQLiteError) {
        try c.transaction { () throws(SQLiteError) in
            try c.execute("""
                PRAGMA application_id = \(applicationID);
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                -- Readings not yet sealed into a batch, in arrival order.
                CREATE TABLE readings (
                    id INTEGER PRIMARY KEY,
                    gateway_id TEXT NOT NULL, sensor_id TEXT NOT NULL, metric TEXT NOT NULL, topic TEXT NOT NULL,
                    time_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
                    value_type INTEGER NOT NULL, value_real REAL, value_int INTEGER, value_text TEXT,
                    unit TEXT, labels TEXT);
                -- Sealed batches: identity (gateway, epoch, sequence) and encoded contents fixed until acknowledged.
                CREATE TABLE batches (
                    sequence INTEGER PRIMARY KEY,
                    epoch TEXT NOT NULL,
                    payload BLOB NOT NULL,
                    reading_count INTEGER NOT NULL,
                    oldest_received_ms INTEGER NOT NULL,
                    sealed_at_ms INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    set_aside INTEGER NOT NULL DEFAULT 0,
                    sent INTEGER NOT NULL DEFAULT 0,  -- claimed for sending at least once
                    last_error TEXT);
                -- Payloads that could not be decoded, kept for inspection.
                CREATE TABLE quarantine (
                    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
                    reason TEXT NOT NULL, received_ms INTEGER NOT NULL);
                """)
            try c.run("INSERT INTO meta VALUES ('format_version', ?), ('gateway_id', ?), ('epoch', ?), ('created_ms', ?)",
                      String(formatVersion), gatewayID, UUID().uuidString.lowercased(), String(WallClock.nowMs()))
            for name in ["next_sequence", "ingested_total", "acknowledged_total", "quarantined_total", "dropped_total"] {
                try c.run("INSERT INTO counters VALUES (?, ?)", name, name == "next_sequence" ? 1 : 0)
            }
        }
    }

    /// Buffers made before `batches.epoch` existed get it: their batches are all of the one epoch.
    private static func addEpochColumn(_ c: SQLiteConnection, epoch: String) throws(SQLiteError) {
        var columns: Set<String> = []
        try c.forEach("PRAGMA table_info(batches)") { row in columns.insert(row.string(1) ?? "") }
        guard !columns.contains("epoch") else { return }
        try c.transaction { () throws(SQLiteError) in
            try c.execute("ALTER TABLE batches ADD COLUMN epoch TEXT")
            try c.run("UPDATE batches SET epoch = ?", epoch)
        }
    }

    /// Buffers made before `batches.sent` existed get it; a batch with attempts was sent.
    private static func addSentColumn(_ c: SQLiteConnection) throws(SQLiteError) {
        var columns: Set<String> = []
        try c.forEach("PRAGMA table_info(batches)") { row in columns.insert(row.string(1) ?? "") }
        guard !columns.contains("sent") else { return }
        try c.transaction { () throws(SQLiteError) in
            try c.execute("ALTER TABLE batches ADD COLUMN sent INTEGER NOT NULL DEFAULT 0")
            try c.execute("UPDATE batches SET sent = 1 WHERE attempts > 0")
        }
    }

    private static func loadCounters(_ c: SQLiteConnection) throws(SQLiteError) -> Counters {
        var counters = Counters()
        try c.forEach("SELECT name, value FROM counters") { row in
            let value = row.int64(1)
            switch row.string(0) {
            case "ingested_total": counters.ingestedTotal = value
            case "acknowledged_total": counters.acknowledgedTotal = value
            case "quarantined_total": counters.quarantinedTotal = value
            case "dropped_total": counters.droppedTotal = value
            case "redeliveries_total": counters.redeliveriesTotal = value
            default: break
            }
        }
        counters.unsealedReadings = try c.scalar("SELECT count(*) FROM readings")?.int64 ?? 0
        try c.forEach("SELECT set_aside, count(*), coalesce(sum(reading_count), 0) FROM batches GROUP BY set_aside") { row in
            if row.int64(0) == 0 {
                counters.sealedBatches = row.int64(1)
                counters.sealedReadings = row.int64(2)
            } else {
                counters.setAsideBatches = row.int64(1)
            }
        }
        return counters
    }

    /// The digest of the last payload stored from each of `topics` that has one. Topics are
    /// told apart by their bytes, as the broker and the table do.
    public func lastPayloadDigests(_ topics: some Sequence<ExactString>) throws(SQLiteError) -> [ExactString: Int64] {
        try db.withConnection { c throws(SQLiteError) in
            var found: [ExactString: Int64] = [:]
            for topic in topics {
                if let digest = try c.scalar("SELECT digest FROM topic_payloads WHERE topic = ?", topic.value)?.int64 { found[topic] = digest }
            }
            return found
        }
    }

    /// The filters the broker's persistent session for `clientID` held when they were last
    /// confirmed, or nil when unknown (never recorded, or recorded for another client id).
    public func sessionSubscriptions(clientID: String) throws(SQLiteError) -> Set<String>? {
        let stored = try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT value FROM meta WHERE key = 'mqtt_session'")?.string
        }
        guard let stored, let session = try? JSONDecoder().decode(MQTTSession.self, from: Data(stored.utf8)),
              session.clientID == clientID else { return nil }
        return Set(session.filters)
    }

    public func setSessionSubscriptions(_ filters: Set<String>, clientID: String) throws(SQLiteError) {
        let json = (try? JSONEncoder().encode(MQTTSession(clientID: clientID, filters: filters.sorted()))).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        try db.withConnection { c throws(SQLiteError) in
            try c.run("INSERT INTO meta (key, value) VALUES ('mqtt_session', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", json)
        }
    }

    /// The redelivery window a stopping agent left (see `RedeliveryFilter`), as it gave it;
    /// empty when none.
    public func redeliveryWindow() throws(SQLiteError) -> [UInt8] {
        let stored = try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT value FROM meta WHERE key = 'redelivery_window'")?.string
        }
        return stored.flatMap(BatchChain.bytes(hex:)) ?? []
    }

    public func setRedeliveryWindow(_ window: [UInt8]) throws(SQLiteError) {
        try db.withConnection { c throws(SQLiteError) in
            try c.run("INSERT INTO meta (key, value) VALUES ('redelivery_window', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                      BatchChain.hex(window))
        }
    }

    private struct MQTTSession: Codable {
        var clientID: String
        var filters: [String]
        enum CodingKeys: String, CodingKey {
            case clientID = "client_id"
            case filters
        }
    }

    /// The Sparkplug sessions last committed with `append`, if any.
    public func sparkplugSessions() throws(SQLiteError) -> String? {
        try db.withConnection { c throws(SQLiteError) in
            try c.scalar("SELECT value FROM meta WHERE key = 'sparkplug_sessions'")?.string
        }
    }

    // MARK: writing

    /// Commits a group of readings and quarantined payloads in one transaction, with the count
    /// of redelivered messages that were recognised and not stored again, and the Sparkplug
    /// sessions when the group's births or deaths changed them (so both survive together).
    /// `payloadDigests` (topic -> digest) are the payloads this group processed, kept per topic
    /// in the same transaction so a retained message can be recognised later.
    public func append(_ readings: [Reading], quarantined: [QuarantinedPayload], redeliveries: Int = 0,
                       sparkplugSessions: String? = nil, payloadDigests: [ExactString: Int64] = [:],
                       monotonicNowMs: Int64 = MonotonicClock.nowMs()) throws(SQLiteError) {
        guard !readings.isEmpty || !quarantined.isEmpty || redeliveries > 0 || sparkplugSessions != nil || !payloadDigests.isEmpty else { return }
        let lastID = try db.withConnection { c throws(SQLiteError) -> Int64 in
            try c.transaction { () throws(SQLiteError) in
                if let sparkplugSessions {
                    try c.run("INSERT OR REPLACE INTO meta (key, value) VALUES ('sparkplug_sessions', ?)", sparkplugSessions)
                }
                try c.runForEach("""
                    INSERT INTO readings (gateway_id, sensor_id, metric, topic, time_ms, received_ms,
                        value_type, value_real, value_int, value_text, unit, labels)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, readings) { row, r in
                    let (type, real, int, text) = Self.columns(r.value)
                    row.bind(r.gatewayID)
                    row.bind(r.sensorID)
                    row.bind(r.metric)
                    row.bind(r.topic)
                    row.bind(r.timeMs)
                    row.bind(r.receivedAtMs)
                    row.bind(type)
                    row.bind(real)
                    row.bind(int)
                    row.bind(text)
                    row.bind(r.unit)
                    row.bind(LabelsJSON.encode(r.labels))
                }
                let lastID = c.lastInsertRowID
                try c.runForEach("INSERT INTO topic_payloads (topic, digest) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET digest = excluded.digest",
                                 payloadDigests) { row, entry in
                    row.bind(entry.key.value)
                    row.bind(entry.value)
                }
                for q in quarantined {
                    try c.run("INSERT INTO quarantine (topic, payload, reason, received_ms) VALUES (?, ?, ?, ?)",
                              q.topic, q.payload, q.reason, q.receivedAtMs)
                }
                try Self.bump(c, "ingested_total", by: readings.count)
                try Self.bump(c, "quarantined_total", by: quarantined.count)
                try Self.bump(c, "redeliveries_total", by: redeliveries)
                return lastID
            }
        }
        if !readings.isEmpty { arrivals.withLock { $0.append((lastID, monotonicNowMs)) } }
        counters.withLock {
            $0.redeliveriesTotal += Int64(redeliveries)
            $0.unsealedReadings += Int64(readings.count)
            $0.ingestedTotal += Int64(readings.count)
            $0.quarantinedTotal += Int64(quarantined.count)
        }
    }

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
    private func arrival(ofRow id: Int64) -> Int64 {
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
    private func sealOne(maxReadings: Int, nowMs: Int64) throws(SQLiteError) -> Int {
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
    private func seal(_ c: SQLiteConnection, _ readings: [Reading], epoch: String, oldestReceivedMs: Int64, nowMs: Int64) throws(SQLiteError) {
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
    private func durably<T>(_ c: SQLiteConnection, _ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
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

    /// Bytes of free pages inside the file: room for new readings without growing it.
    public func freeBytesInFile() throws(SQLiteError) -> Int64 {
        try pageUsage().free
    }

    private func pageUsage() throws(SQLiteError) -> (inUse: Int64, free: Int64) {
        try db.withConnection { c throws(SQLiteError) in
            let pages = try c.scalar("PRAGMA page_count")?.int64 ?? 0
            let free = try c.scalar("PRAGMA freelist_count")?.int64 ?? 0
            let size = try c.scalar("PRAGMA page_size")?.int64 ?? 4096
            return ((pages - free) * size, free * size)
        }
    }

    /// The quarantined payloads, newest last (for inspection and tests).
    public func quarantinedPayloads(limit: Int = 100) throws(SQLiteError) -> [QuarantinedPayload] {
        try db.withConnection { c throws(SQLiteError) in
            var result: [QuarantinedPayload] = []
            try c.forEach("SELECT topic, payload, reason, received_ms FROM quarantine ORDER BY id LIMIT ?", [limit]) { row in
                result.append(QuarantinedPayload(topic: row.string(0) ?? "", payload: row[1].bytes ?? [],
                                                 reason: row.string(2) ?? "", receivedAtMs: row.int64(3)))
            }
            return result
        }
    }

    /// Caps the file at `pages` pages, so tests meet SQLITE_FULL as on a full disk.
    func limitPagesForTesting(_ pages: Int) throws(SQLiteError) {
        try db.withConnection { c throws(SQLiteError) in _ = try c.execute("PRAGMA max_page_count = \(pages)") }
    }

    // MARK: helpers

    private static func bump(_ c: SQLiteConnection, _ name: String, by amount: Int) throws(SQLiteError) {
        guard amount != 0 else { return }
        // An upsert: counters added in later versions have no row in older files.
        try c.run("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", name, amount)
    }

    private static func columns(_ value: ReadingValue) -> (Int, Double?, Int64?, String?) {
        switch value {
        case .double(let d): (1, d, nil, nil)
        case .integer(let i): (2, nil, i, nil)
        case .boolean(let b): (3, nil, b ? 1 : 0, nil)
        case .text(let t): (4, nil, nil, t)
        }
    }

    private static func value(type: Int64, real: Double, int: Int64, text: String?) -> ReadingValue {
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
