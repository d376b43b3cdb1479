import Foundation
import Synchronization
import SwiftProtobuf
import TributaryAdminAPI
import TributaryCore
import TributarySQLite
import TributaryWire

/// What the aggregator knows about each gateway: the last status every request carries,
/// running totals, each epoch's provenance chain, and a short history of what became of each
/// gateway's recent requests.
///
/// Kept in memory, where requests update it and the fleet view reads it, and in
/// `registry.sqlite` in its data directory, so a restart keeps it. Writes to the file are
/// coalesced: whichever request finds no write under way starts one, and it carries everything
/// that changed since the last (group commit). One transaction per request, with its fsync, was
/// a tenth of the aggregator's time at 1,000 batches/s, and the fleet view read and decoded
/// every gateway's row for each `tributaryctl status` and Prometheus scrape.
///
/// A batch's record (its counts and its chain link) is in the file before the batch is
/// answered, as before: a link lost in a crash would show as a false gap in the gateway's
/// provenance chain. Heartbeats and refusals are not waited for; a crash can lose the last
/// moment of them (status only, never readings), and the next request brings the status back.
public final class FleetRegistry: Sendable {
    /// Sync events kept per gateway for `tributaryctl gateway ID`; older ones are pruned.
    public static let eventsPerGateway = 100
    /// History lines waiting for the file, past which the oldest are let go (only while
    /// writes keep failing: a full disk). Counts and statuses are never let go.
    static let maxPendingEvents = 200_000

    /// One gateway as the registry holds it.
    struct Entry: Sendable {
        var lastSeenMs: Int64 = 0
        var status = Tributary_V1_GatewayStatus()
        var readingsSynced: Int64 = 0
        var batchesSynced: Int64 = 0
        var duplicateBatches: Int64 = 0
        var clockSkewMs: Int64 = 0
        var roundTripMs: Int64 = -1
        var lastBatchMs: Int64 = 0
        /// Its latest epochs' chains (at most `chainEpochsPerGateway`).
        var chains: [String: StoredChain] = [:]

        /// The chain shown: the epoch updated last.
        var latestChain: ChainTracker? { chains.values.max { $0.updatedMs < $1.updatedMs }?.tracker }
    }

    struct StoredChain: Sendable {
        var tracker: ChainTracker
        var updatedMs: Int64
    }

    struct PendingEvent: Sendable {
        let gatewayID: String
        var event: SyncEvent
    }

    /// Everything not yet in the file.
    struct Unwritten: Sendable {
        var gateways: Set<ExactString> = []
        var chains: Set<ChainKey> = []
        var removedChains: Set<ChainKey> = []
        var events: [PendingEvent] = []
        var eventsLetGo = 0

        var isEmpty: Bool { gateways.isEmpty && chains.isEmpty && removedChains.isEmpty && events.isEmpty }

        /// Takes back what a failed write held, ahead of what arrived meanwhile.
        mutating func restore(_ failed: Unwritten) {
            gateways.formUnion(failed.gateways)
            chains.formUnion(failed.chains)
            removedChains.formUnion(failed.removedChains.subtracting(chains))
            events = failed.events + events
            if events.count > FleetRegistry.maxPendingEvents {
                eventsLetGo += events.count - FleetRegistry.maxPendingEvents
                events.removeFirst(events.count - FleetRegistry.maxPendingEvents)
            }
        }
    }

    struct ChainKey: Hashable, Sendable {
        let gateway: ExactString
        let epoch: String
    }

    private struct State {
        var gateways: [ExactString: Entry] = [:]
        var unwritten = Unwritten()
        var lastWriteError: String?
        /// Every change takes the next number; `written` is the last one in the file.
        var changes: UInt64 = 0
        var written: UInt64 = 0
        /// A write is under way (it takes what changes meanwhile when it is done).
        var writing = false
        var closed = false
        var waiters: [(change: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []

        /// Hands the writer what is unwritten; nil when there is nothing (and it stops).
        mutating func takeForWriting() -> (Unwritten, [(String, Entry)], UInt64)? {
            guard !unwritten.isEmpty, !closed else {
                writing = false
                return nil
            }
            let taken = unwritten
            unwritten = Unwritten()
            let rows = taken.gateways.compactMap { id in gateways[id].map { (id.value, $0) } }
            return (taken, rows, changes)
        }

        /// The waiters a finished write answers.
        mutating func answered(through change: UInt64) -> [CheckedContinuation<Void, any Error>] {
            written = max(written, change)
            let done = waiters.filter { $0.change <= written }.map(\.continuation)
            waiters.removeAll { $0.change <= written }
            return done
        }
    }

    private let db: SQLiteDatabase
    private let state: Mutex<State>
    private let flushTask: Mutex<Task<Void, Never>?> = Mutex(nil)
    public let flushInterval: Duration

    public init(path: String, flushInterval: Duration = .seconds(1)) throws(SQLiteError) {
        self.flushInterval = flushInterval
        db = try SQLiteDatabase(path: path)
        let loaded = try db.withConnection { c throws(SQLiteError) -> [ExactString: Entry] in
            try c.execute("PRAGMA journal_mode = WAL")
            try Self.migrate(c)
            return try Self.load(c)
        }
        state = Mutex(State(gateways: loaded))
        // What was not waited for (heartbeats, refusals) is written within `flushInterval` even
        // when nothing else comes to start a write.
        let task = Task { [weak self, flushInterval] in
            while !Task.isCancelled {
                try? await Task.sleep(for: flushInterval)
                guard let self, !Task.isCancelled else { return }
                self.startWriting()
            }
        }
        flushTask.withLock { $0 = task }
    }

    /// Whether a request from `gatewayID` may be recorded: a gateway it holds, or a new one
    /// while it holds fewer than `max`. Without gateway tokens any client can name any id, and
    /// each new one grows the registry, the fleet view and `/metrics` for good. By bytes, as
    /// the table keys them: by `String`, the byte variants of one canonically equivalent id
    /// took one place under the cap and a row each (2^k of them for k syllables).
    public func admits(_ gatewayID: String, max: Int) -> Bool {
        state.withLock { $0.gateways[ExactString(gatewayID)] != nil || $0.gateways.count < max }
    }

    public var gatewayCount: Int { state.withLock { $0.gateways.count } }

    /// Why the last write to the file failed, while writes keep failing.
    public var lastWriteError: String? { state.withLock { $0.lastWriteError } }

    /// Version 1 had only `gateways`; version 2 adds the round trip, the last batch time and
    /// the history; version 3 the hash chains. `PRAGMA user_version` records which one the file has.
    private static func migrate(_ c: SQLiteConnection) throws(SQLiteError) {
        let version = try c.scalar("PRAGMA user_version")?.int64 ?? 0
        if version < 2 { try migrateToVersion2(c) }
        if version < 3 {
            try c.execute("""
                CREATE TABLE IF NOT EXISTS chains (
                    gateway_id TEXT    NOT NULL,
                    epoch      TEXT    NOT NULL,
                    state      TEXT    NOT NULL,  -- ChainTracker, JSON
                    updated_ms INTEGER NOT NULL,
                    PRIMARY KEY (gateway_id, epoch)
                ) WITHOUT ROWID;
                PRAGMA user_version = 3;
                """)
        }
    }

    private static func migrateToVersion2(_ c: SQLiteConnection) throws(SQLiteError) {
        try c.transaction { () throws(SQLiteError) in
            try c.execute("""
                CREATE TABLE IF NOT EXISTS gateways (
                    gateway_id        TEXT PRIMARY KEY,
                    last_seen_ms      INTEGER NOT NULL,
                    status            BLOB    NOT NULL,  -- the last tributary.v1.GatewayStatus
                    readings_synced   INTEGER NOT NULL DEFAULT 0,
                    batches_synced    INTEGER NOT NULL DEFAULT 0,
                    duplicate_batches INTEGER NOT NULL DEFAULT 0,
                    clock_skew_ms     INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID;
                """)
            var columns: Set<String> = []
            try c.forEach("PRAGMA table_info(gateways)") { row in columns.insert(row.string(1) ?? "") }
            if !columns.contains("round_trip_ms") {
                try c.execute("ALTER TABLE gateways ADD COLUMN round_trip_ms INTEGER NOT NULL DEFAULT -1")
            }
            if !columns.contains("last_batch_ms") {
                try c.execute("ALTER TABLE gateways ADD COLUMN last_batch_ms INTEGER NOT NULL DEFAULT 0")
            }
            try c.execute("""
                CREATE TABLE IF NOT EXISTS sync_events (
                    id         INTEGER PRIMARY KEY,
                    gateway_id TEXT    NOT NULL,
                    at_ms      INTEGER NOT NULL,
                    kind       TEXT    NOT NULL,  -- SyncEvent.Kind
                    batch      TEXT    NOT NULL,
                    readings   INTEGER NOT NULL,
                    detail     TEXT    NOT NULL
                );
                CREATE INDEX IF NOT EXISTS sync_events_by_gateway ON sync_events (gateway_id, id);
                PRAGMA user_version = 2;
                """)
        }
    }

    /// Epochs whose chain is kept per gateway: an agent that wipes its buffer starts a new one.
    static let chainEpochsPerGateway = 4

    public enum Event: Sendable {
        /// Written to the sink; `chain` is the batch's link, for provenance.
        case accepted(BatchIdentity, readings: Int, chain: ChainLink)
        /// Already written; its link still counts for the chain (a batch whose first answer was
        /// lost, or whose registry update failed, is known only from its resend).
        case duplicate(BatchIdentity, readings: Int, chain: ChainLink)
        case heartbeat
        /// The sink could not take the batch; the gateway still holds it.
        case refused(BatchIdentity, readings: Int, reason: String)
        /// The batch was refused for good (4xx).
        case rejected(BatchIdentity?, reason: String)
    }

    /// Records a request's status and what became of it. The status a batch carries describes
    /// the gateway once the batch is committed; when the sink refused it, the round's readings
    /// are added back so the backlog shown is what the gateway really holds. In memory at once
    /// (the fleet view shows it); in the file within `flushInterval`.
    public func record(_ status: Tributary_V1_GatewayStatus, event: Event, receivedAtMs: Int64) async throws {
        var status = status.sanitized()
        if case .refused = event { status = Self.uncommitted(status) }
        let (skew, roundTrip) = Self.clock(status, receivedAtMs: receivedAtMs)
        let entryEvent = Self.historyEntry(event, atMs: receivedAtMs)
        let id = ExactString(status.gatewayID)
        let change = state.withLock { s -> UInt64 in
            var entry = s.gateways[id] ?? Entry()
            entry.lastSeenMs = receivedAtMs
            entry.status = status
            entry.clockSkewMs = skew
            entry.roundTripMs = roundTrip
            switch event {
            case .accepted(let identity, let n, let link):
                entry.readingsSynced = entry.readingsSynced.saturatingAdd(Int64(n))
                entry.batchesSynced = entry.batchesSynced.saturatingAdd(1)
                entry.lastBatchMs = max(entry.lastBatchMs, receivedAtMs)
                Self.follow(&entry, &s.unwritten, gateway: id, identity: identity, link: link, atMs: receivedAtMs)
            case .duplicate(let identity, _, let link):
                entry.duplicateBatches = entry.duplicateBatches.saturatingAdd(1)
                Self.follow(&entry, &s.unwritten, gateway: id, identity: identity, link: link, atMs: receivedAtMs)
            case .heartbeat, .refused, .rejected:
                break
            }
            s.gateways[id] = entry
            s.unwritten.gateways.insert(id)
            s.unwritten.events.append(PendingEvent(gatewayID: status.gatewayID, event: entryEvent))
            if s.unwritten.events.count > Self.maxPendingEvents {
                s.unwritten.events.removeFirst()
                s.unwritten.eventsLetGo += 1
            }
            s.changes += 1
            return s.changes
        }
        switch event {
        case .accepted, .duplicate: try await written(through: change)
        case .heartbeat, .refused, .rejected: break
        }
    }

    /// Returns once change `change` is in the file, starting a write if none is under way.
    private func written(through change: UInt64) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let done = state.withLock { s -> Bool in
                if s.written >= change { return true }
                s.waiters.append((change, continuation))
                return false
            }
            if done { continuation.resume() }
            startWriting()
        }
    }

    /// Starts the writer unless one runs: it writes until nothing is left, each write taking
    /// everything that changed while the one before it ran.
    private func startWriting() {
        let start = state.withLock { s -> Bool in
            guard !s.writing, !s.unwritten.isEmpty, !s.closed else { return false }
            s.writing = true
            return true
        }
        guard start else { return }
        Task {
            while true {
                do {
                    let more = try await db.perform { c in try self.writeOnce(c) }
                    if !more { return }
                } catch {
                    // Tried again at the next tick or request; meanwhile the view is right and the waiters know.
                    let failed = state.withLock { s in
                        s.writing = false
                        let waiters = s.waiters.map(\.continuation)
                        s.waiters = []
                        return waiters
                    }
                    for waiter in failed { waiter.resume(throwing: error) }
                    return
                }
            }
        }
    }

    /// Moves the batch's epoch chain on by one batch (see `ChainTracker`). A new epoch pushes
    /// the gateway's oldest past `chainEpochsPerGateway` out.
    private static func follow(_ entry: inout Entry, _ unwritten: inout Unwritten, gateway: ExactString, identity: BatchIdentity,
                               link: ChainLink, atMs: Int64) {
        let key = ChainKey(gateway: gateway, epoch: identity.epoch)
        if var stored = entry.chains[identity.epoch] {
            stored.tracker.add(sequence: identity.sequence, link: link, atMs: atMs)
            stored.updatedMs = atMs
            entry.chains[identity.epoch] = stored
        } else {
            entry.chains[identity.epoch] = StoredChain(tracker: ChainTracker(epoch: identity.epoch, sequence: identity.sequence, link: link),
                                                       updatedMs: atMs)
            unwritten.removedChains.remove(key)
            while entry.chains.count > chainEpochsPerGateway,
                  let oldest = entry.chains.min(by: { ($0.value.updatedMs, $0.key) < ($1.value.updatedMs, $1.key) })?.key {
                entry.chains[oldest] = nil
                let gone = ChainKey(gateway: gateway, epoch: oldest)
                unwritten.chains.remove(gone)
                unwritten.removedChains.insert(gone)
            }
        }
        unwritten.chains.insert(key)
    }

    /// Writes what changed since the last write in one transaction, and answers the waiters
    /// it covers; false when there was nothing to write (the writer stops). Runs with the
    /// connection held, so writes never overtake one another; what a failed write held is kept
    /// for the next.
    private func writeOnce(_ c: SQLiteConnection) throws(SQLiteError) -> Bool {
        guard let work = state.withLock({ $0.takeForWriting() }) else { return false }
        let (taken, rows, through) = work
        if taken.eventsLetGo > 0 {
            // Said once, in the file's own history: these gateways' lists have a hole.
            state.withLock { $0.lastWriteError = "\(taken.eventsLetGo) history lines were let go while the registry could not be written" }
        }
        do {
            try c.transaction { () throws(SQLiteError) in
                try c.runForEach("""
                    INSERT INTO gateways (gateway_id, last_seen_ms, status, readings_synced, batches_synced, duplicate_batches,
                                          clock_skew_ms, round_trip_ms, last_batch_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (gateway_id) DO UPDATE SET
                        last_seen_ms = excluded.last_seen_ms, status = excluded.status, readings_synced = excluded.readings_synced,
                        batches_synced = excluded.batches_synced, duplicate_batches = excluded.duplicate_batches,
                        clock_skew_ms = excluded.clock_skew_ms, round_trip_ms = excluded.round_trip_ms, last_batch_ms = excluded.last_batch_ms
                    """, rows) { binder, row in
                    let (id, e) = row
                    binder.bind(id)
                    binder.bind(e.lastSeenMs)
                    binder.bind(.blob((try? e.status.serializedBytes() as [UInt8]) ?? []))
                    for figure in [e.readingsSynced, e.batchesSynced, e.duplicateBatches, e.clockSkewMs, e.roundTripMs, e.lastBatchMs] {
                        binder.bind(figure)
                    }
                }
                var historyTouched: Set<String> = []
                for pending in taken.events {
                    let entry = pending.event
                    historyTouched.insert(pending.gatewayID)
                    // Heartbeats in a row are one entry, moved forward: an idle gateway's heartbeats
                    // would otherwise push its last refusals and errors out of the history.
                    let merged = entry.kind == .heartbeat ? try c.run("""
                        UPDATE sync_events SET at_ms = ? WHERE kind = 'heartbeat' AND id =
                            (SELECT max(id) FROM sync_events WHERE gateway_id = ?)
                        """, [entry.atMs, pending.gatewayID]) : 0
                    if merged == 0 {
                        _ = try c.run("""
                            INSERT INTO sync_events (gateway_id, at_ms, kind, batch, readings, detail) VALUES (?, ?, ?, ?, ?, ?)
                            """, [pending.gatewayID, entry.atMs, entry.kind.rawValue, entry.batch, entry.readings, entry.detail])
                    }
                }
                for gateway in historyTouched {
                    _ = try c.run("""
                        DELETE FROM sync_events WHERE gateway_id = ? AND id <=
                            (SELECT id FROM sync_events WHERE gateway_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
                        """, [gateway, gateway, Self.eventsPerGateway])
                }
                let chains = state.withLock { s in
                    taken.chains.compactMap { key in s.gateways[key.gateway]?.chains[key.epoch].map { (key, $0) } }
                }
                for (key, stored) in chains {
                    guard let encoded = try? JSONEncoder().encode(stored.tracker) else { continue }
                    _ = try c.run("""
                        INSERT INTO chains (gateway_id, epoch, state, updated_ms) VALUES (?, ?, ?, ?)
                        ON CONFLICT (gateway_id, epoch) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms
                        """, [key.gateway.value, key.epoch, String(decoding: encoded, as: UTF8.self), stored.updatedMs])
                }
                for key in taken.removedChains {
                    _ = try c.run("DELETE FROM chains WHERE gateway_id = ? AND epoch = ?", [key.gateway.value, key.epoch])
                }
            }
            let done = state.withLock { s in
                if taken.eventsLetGo == 0 { s.lastWriteError = nil }
                return s.answered(through: through)
            }
            for waiter in done { waiter.resume() }
            return true
        } catch {
            state.withLock { s in
                var failed = taken
                failed.eventsLetGo = 0
                s.unwritten.restore(failed)
                s.lastWriteError = "\(error)"
            }
            throw error
        }
    }

    /// Returns once everything recorded so far is in the file (tests, `gateway(_:)`).
    public func flush() async throws {
        try await written(through: state.withLock { $0.changes })
    }

    /// Reads every gateway and its chains, once, at start.
    private static func load(_ c: SQLiteConnection) throws(SQLiteError) -> [ExactString: Entry] {
        var gateways: [ExactString: Entry] = [:]
        try c.forEach("""
            SELECT gateway_id, last_seen_ms, status, readings_synced, batches_synced, duplicate_batches, clock_skew_ms,
                   round_trip_ms, last_batch_ms FROM gateways
            """) { row in
            var entry = Entry()
            entry.lastSeenMs = row.int64(1)
            entry.status = (try? Tributary_V1_GatewayStatus(serializedBytes: row[2].bytes ?? [])) ?? Tributary_V1_GatewayStatus()
            entry.readingsSynced = row.int64(3)
            entry.batchesSynced = row.int64(4)
            entry.duplicateBatches = row.int64(5)
            entry.clockSkewMs = row.int64(6)
            entry.roundTripMs = row.int64(7)
            entry.lastBatchMs = row.int64(8)
            gateways[ExactString(row.string(0) ?? "")] = entry
        }
        try c.forEach("SELECT gateway_id, epoch, state, updated_ms FROM chains") { row in
            let id = ExactString(row.string(0) ?? "")
            guard gateways[id] != nil, let epoch = row.string(1), let state = row.string(2),
                  let tracker = try? JSONDecoder().decode(ChainTracker.self, from: Data(state.utf8)) else { return }
            gateways[id]?.chains[epoch] = StoredChain(tracker: tracker, updatedMs: row.int64(3))
        }
        return gateways
    }

    /// The status as it is while the round's batches are still on the gateway. (Both figures
    /// are bounded by `sanitized()`, so the sum cannot overflow.)
    static func uncommitted(_ status: Tributary_V1_GatewayStatus) -> Tributary_V1_GatewayStatus {
        var status = status
        status.backlogReadings += status.roundReadings
        if status.roundOldestMs > 0 {
            status.oldestUnsentMs = status.oldestUnsentMs > 0 ? min(status.oldestUnsentMs, status.roundOldestMs) : status.roundOldestMs
        }
        status.roundReadings = 0
        status.roundOldestMs = 0
        return status
    }

    /// Skew and round trip from the gateway's last completed exchange (NTP-style). Without one
    /// (its first request), the gateway's send time against our receive time: skew plus the
    /// one-way delay, with the round trip -1 (unknown).
    static func clock(_ status: Tributary_V1_GatewayStatus, receivedAtMs: Int64) -> (skewMs: Int64, roundTripMs: Int64) {
        let exchange = status.lastExchange.exchange
        if status.hasLastExchange, exchange.isComplete { return (exchange.gatewayAheadMs, exchange.roundTripMs) }
        return (status.clockMs > 0 ? status.clockMs.saturatingMinus(receivedAtMs) : 0, -1)
    }

    static func historyEntry(_ event: Event, atMs: Int64) -> SyncEvent {
        switch event {
        // Identities are client text: cleaned before they are stored, as every other field.
        case .accepted(let id, let n, _): SyncEvent(atMs: atMs, kind: .accepted, batch: Printable.clean("\(id)", maxLength: 256), readings: n)
        case .duplicate(let id, let n, _): SyncEvent(atMs: atMs, kind: .duplicate, batch: Printable.clean("\(id)", maxLength: 256), readings: n)
        case .heartbeat: SyncEvent(atMs: atMs, kind: .heartbeat)
        case .refused(let id, let n, let reason):
            SyncEvent(atMs: atMs, kind: .refused, batch: Printable.clean("\(id)", maxLength: 256), readings: n, detail: Printable.clean(reason, maxLength: 512))
        case .rejected(let id, let reason):
            SyncEvent(atMs: atMs, kind: .rejected, batch: id.map { Printable.clean("\($0)", maxLength: 256) } ?? "",
                      detail: Printable.clean(reason, maxLength: 512))
        }
    }

    public func gateways(nowMs: Int64, staleAfterSeconds: Int) async throws -> [GatewayView] {
        let entries = state.withLock { s in s.gateways.map { ($0.key.value, $0.value) } }
        // Byte order, as the table's primary key sorted them before.
        return entries.sorted { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
            .map { Self.view($0.0, $0.1, nowMs: nowMs, staleAfterSeconds: staleAfterSeconds) }
    }

    /// One gateway with its history (newest first), or nil if it never reported.
    public func gateway(_ id: String, nowMs: Int64, staleAfterSeconds: Int) async throws -> GatewayDetail? {
        guard let entry = state.withLock({ $0.gateways[ExactString(id)] }) else { return nil }
        // The history is read from the file: what waits for it goes first. If it cannot be
        // written, the history shown is the file's.
        try? await flush()
        let history = try await db.perform { c in
            var events: [SyncEvent] = []
            try c.forEach("SELECT at_ms, kind, batch, readings, detail FROM sync_events WHERE gateway_id = ? ORDER BY id DESC", [id]) { row in
                events.append(SyncEvent(atMs: row.int64(0), kind: SyncEvent.Kind(rawValue: row.string(1) ?? "") ?? .rejected,
                                        batch: row.string(2) ?? "", readings: Int(row.int64(3)), detail: row.string(4) ?? ""))
            }
            return events
        }
        return GatewayDetail(generatedAtMs: nowMs, staleAfterSeconds: staleAfterSeconds,
                             gateway: Self.view(id, entry, nowMs: nowMs, staleAfterSeconds: staleAfterSeconds), history: history)
    }

    /// A gateway as the fleet view shows it. Everything from the status is client text, cleaned
    /// (and bounded) here.
    static func view(_ id: String, _ entry: Entry, nowMs: Int64, staleAfterSeconds: Int) -> GatewayView {
        var view = GatewayView(gatewayID: id)
        view.lastSeenMs = entry.lastSeenMs
        view.stale = nowMs.saturatingMinus(view.lastSeenMs) > Int64(staleAfterSeconds) * 1000
        view.readingsSynced = UInt64(clamping: entry.readingsSynced)
        view.batchesSynced = UInt64(clamping: entry.batchesSynced)
        view.duplicateBatches = UInt64(clamping: entry.duplicateBatches)
        view.clockSkewMs = entry.clockSkewMs
        view.roundTripMs = entry.roundTripMs
        view.lastBatchMs = entry.lastBatchMs
        view.chain = entry.latestChain?.view(nowMs: nowMs)
        let status = entry.status
        view.agentVersion = status.agentVersion
        view.brokerConnected = status.brokerConnected
        view.backlogReadings = status.backlogReadings
        view.backlogBytes = status.backlogBytes
        view.oldestUnsentMs = status.oldestUnsentMs
        view.quarantinedTotal = status.quarantinedTotal
        view.droppedTotal = status.droppedTotal
        view.withheldTotal = status.withheldTotal
        view.acknowledgedTotal = status.acknowledgedTotal
        view.setAsideBatches = status.setAsideBatches
        view.redeliveriesTotal = status.redeliveriesTotal
        view.bufferFull = status.bufferFull
        view.ingestRate = status.ingestRate
        view.sendRate = status.sendRate
        view.lastError = status.lastError
        view.lastErrorMs = status.lastErrorMs
        if status.hasRelay {
            let r = status.relay
            view.relay = RelayView(spoolBatches: r.spoolBatches, spoolBytes: r.spoolBytes, oldestUnforwardedMs: r.oldestUnforwardedMs,
                                   upstreamUp: r.upstreamUp, forwardedBatchesTotal: r.forwardedBatchesTotal,
                                   forwardedReadingsTotal: r.forwardedReadingsTotal, setAsideBatches: r.setAsideBatches,
                                   forwardRate: r.forwardRate, gateways: r.gateways, lastError: Printable.clean(r.lastError, maxLength: 300))
        }
        if !status.aggregator.isEmpty {
            view.aggregator = Printable.clean(status.aggregator, maxLength: 256)
            view.failovers = status.failoversTotal
        }
        if !status.via.isEmpty {
            view.via = status.via.prefix(64).map { Printable.clean($0, maxLength: 128) }
        }
        if !status.quarantineReasons.isEmpty {
            view.quarantineReasons = status.quarantineReasons.prefix(5).map {
                QuarantineReasonCount(kind: Printable.clean($0.kind, maxLength: 80), count: $0.count,
                                      example: Printable.clean($0.example, maxLength: 300))
            }
        }
        return view
    }

    /// Writes what is waiting and closes the file. Once only.
    public func close() {
        flushTask.withLock { task in
            task?.cancel()
            task = nil
        }
        // What is left is written here, after a write under way (the connection's lock orders them).
        try? db.withConnection { c throws(SQLiteError) in
            while try writeOnce(c) {}
        }
        let abandoned = state.withLock { s in
            s.closed = true
            let waiters = s.waiters.map(\.continuation)
            s.waiters = []
            return waiters
        }
        for waiter in abandoned { waiter.resume(throwing: SQLiteError(code: 21, message: "the fleet registry is closed", path: db.path, sql: nil)) }
        db.close()
    }
}
