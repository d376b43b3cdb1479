import Foundation
import Logging
import Testing
import TributaryCore
import TributarySQLite
import TributaryTesting
import TributaryWire
@testable import TributaryAggregator

@Suite struct FleetRegistryTests {
    static let link = ChainLink(digest: "00", previous: "")
    static func status(_ gateway: String = "gw-1", backlog: UInt64, oldest: Int64, round: UInt64 = 0, roundOldest: Int64 = 0) -> Tributary_V1_GatewayStatus {
        var s = Tributary_V1_GatewayStatus()
        s.gatewayID = gateway
        s.backlogReadings = backlog
        s.oldestUnsentMs = oldest
        s.roundReadings = round
        s.roundOldestMs = roundOldest
        return s
    }

    /// `limits.max_gateways` counts gateways by their ids' bytes, as the registry stores them:
    /// a composed Hangul syllable and its decomposed jamo are two gateways (Swift's `==` takes
    /// them as one, and every byte variant of one name took a row under one place of the cap).
    @Test func theCapCountsIdsByTheirBytes() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let registry = try FleetRegistry(path: dir.file("registry.sqlite"))
        defer { registry.close() }
        let composed = "gw\u{D55C}", decomposed = "gw\u{1112}\u{1161}\u{11AB}"
        #expect(composed == decomposed && GatewayID.isValid(decomposed), "the premise")
        #expect(registry.admits(composed, max: 1))
        try await registry.record(Self.status(composed, backlog: 0, oldest: 0), event: .heartbeat, receivedAtMs: 1)
        #expect(registry.admits(composed, max: 1), "a gateway it holds")
        #expect(!registry.admits(decomposed, max: 1), "another gateway, and the registry is full")
    }

    /// The registry is held in memory, and written in coalesced transactions: a batch's record
    /// (counts, chain link) is in the file before `record` returns, as the batch is answered
    /// only then; a heartbeat is not waited for (written within the flush interval, or on close).
    @Test func batchesAreWrittenBeforeTheyAreAnsweredHeartbeatsLater() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("registry.sqlite")
        let registry = try FleetRegistry(path: path, flushInterval: .seconds(3600))
        // Concurrent batches share writes; each is in the file when its record returns.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for sequence in 1...3 as ClosedRange<UInt64> {
                group.addTask {
                    let id = BatchIdentity(gatewayID: "gw-1", epoch: "e1", sequence: sequence)
                    try await registry.record(Self.status(backlog: 0, oldest: 0),
                                              event: .accepted(id, readings: 10, chain: ChainLink(digest: "d\(sequence)", previous: sequence == 1 ? "" : "d\(sequence - 1)")),
                                              receivedAtMs: Int64(sequence))
                }
            }
            try await group.waitForAll()
        }
        try await registry.record(Self.status(backlog: 0, oldest: 0), event: .duplicate(BatchIdentity(gatewayID: "gw-1", epoch: "e1", sequence: 3), readings: 10,
                                  chain: ChainLink(digest: "d3", previous: "d2")), receivedAtMs: 4)
        try await registry.record(Self.status("gw-2", backlog: 5, oldest: 0), event: .heartbeat, receivedAtMs: 4)
        let shown = try await registry.gateways(nowMs: 5, staleAfterSeconds: 60)
        #expect(shown.map(\.gatewayID) == ["gw-1", "gw-2"], "the view shows both at once")
        let gw1 = try #require(shown.first)
        #expect(gw1.readingsSynced == 30 && gw1.batchesSynced == 3 && gw1.duplicateBatches == 1)
        #expect(gw1.chain?.checkedThrough == 3 && gw1.chain?.broken == false)
        let file = try SQLiteDatabase(path: path, readOnly: true)
        func inFile() throws -> [String: Int64] {
            var rows: [String: Int64] = [:]
            try file.withConnection { c throws(SQLiteError) in
                try c.forEach("SELECT gateway_id, readings_synced FROM gateways") { rows[$0.string(0) ?? ""] = $0.int64(1) }
            }
            return rows
        }
        #expect(try inFile() == ["gw-1": 30], "the batches are in the file; the heartbeat waits for the next write")
        registry.close()
        #expect(try inFile() == ["gw-1": 30, "gw-2": 0], "closing writes the rest")
        file.close()
        let reopened = try FleetRegistry(path: path)
        defer { reopened.close() }
        #expect(try await reopened.gateways(nowMs: 5, staleAfterSeconds: 60) == shown)
        let history = try #require(try await reopened.gateway("gw-1", nowMs: 5, staleAfterSeconds: 60)).history
        #expect(history.map(\.kind) == [.duplicate, .accepted, .accepted, .accepted])
    }

    /// A gateway keeps the chains of its latest `chainEpochsPerGateway` epochs, in memory and in the file.
    @Test func onlyTheLatestEpochsChainsAreKept() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("registry.sqlite")
        let registry = try FleetRegistry(path: path)
        for epoch in 1...6 {
            let id = BatchIdentity(gatewayID: "gw-1", epoch: "e\(epoch)", sequence: 1)
            try await registry.record(Self.status(backlog: 0, oldest: 0), event: .accepted(id, readings: 1, chain: Self.link), receivedAtMs: Int64(epoch))
            if epoch == 3 { try await registry.flush() }
        }
        registry.close()
        let check = try SQLiteDatabase(path: path, readOnly: true)
        defer { check.close() }
        var epochs: [String] = []
        try check.withConnection { c throws(SQLiteError) in
            try c.forEach("SELECT epoch FROM chains ORDER BY epoch") { row in epochs.append(row.string(0) ?? "") }
        }
        #expect(epochs == ["e3", "e4", "e5", "e6"])
        let reopened = try FleetRegistry(path: path)
        defer { reopened.close() }
        #expect(try await reopened.gateways(nowMs: 7, staleAfterSeconds: 60).first?.chain?.epoch == "e6")
    }

    /// A status sent with a batch leaves the batch out of the backlog. When the sink refuses the
    /// batch, the gateway still holds it, and the fleet view must say so.
    @Test func refusedBatchStaysInTheBacklog() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let registry = try FleetRegistry(path: dir.file("registry.sqlite"))
        defer { registry.close() }
        let id = BatchIdentity(gatewayID: "gw-1", epoch: "e", sequence: 4)
        try await registry.record(Self.status(backlog: 300, oldest: 5_000, round: 200, roundOldest: 1_000),
                                  event: .refused(id, readings: 200, reason: "sink unavailable"), receivedAtMs: 10_000)
        var view = try #require(try await registry.gateways(nowMs: 10_000, staleAfterSeconds: 60).first)
        #expect(view.backlogReadings == 500)
        #expect(view.oldestUnsentMs == 1_000)
        #expect(view.readingsSynced == 0)

        try await registry.record(Self.status(backlog: 300, oldest: 5_000, round: 200, roundOldest: 1_000),
                                  event: .accepted(id, readings: 200, chain: Self.link), receivedAtMs: 11_000)
        view = try #require(try await registry.gateways(nowMs: 11_000, staleAfterSeconds: 60).first)
        #expect(view.backlogReadings == 300)
        #expect(view.oldestUnsentMs == 5_000)
        #expect(view.readingsSynced == 200)
        #expect(view.lastBatchMs == 11_000)

        let detail = try #require(try await registry.gateway("gw-1", nowMs: 11_000, staleAfterSeconds: 60))
        #expect(detail.history.map(\.kind) == [.accepted, .refused])
        #expect(detail.history[1].detail == "sink unavailable")
        #expect(detail.history[1].batch == "gw-1/e/4")
        #expect(try await registry.gateway("gw-unknown", nowMs: 0, staleAfterSeconds: 60) == nil)
    }

    @Test func historyKeepsTheNewestEventsPerGateway() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let registry = try FleetRegistry(path: dir.file("registry.sqlite"))
        defer { registry.close() }
        let extra = 15
        for i in 0..<(FleetRegistry.eventsPerGateway + extra) {
            let id = BatchIdentity(gatewayID: "gw-1", epoch: "e", sequence: UInt64(i))
            try await registry.record(Self.status(backlog: 0, oldest: 0), event: .accepted(id, readings: 1, chain: Self.link), receivedAtMs: Int64(i))
        }
        try await registry.record(Self.status("gw-2", backlog: 0, oldest: 0), event: .heartbeat, receivedAtMs: 1)
        let history = try #require(try await registry.gateway("gw-1", nowMs: 0, staleAfterSeconds: 60)).history
        #expect(history.count == FleetRegistry.eventsPerGateway)
        #expect(history.first?.batch == "gw-1/e/\(FleetRegistry.eventsPerGateway + extra - 1)")
        #expect(history.last?.batch == "gw-1/e/\(extra)")
        #expect(try #require(try await registry.gateway("gw-2", nowMs: 0, staleAfterSeconds: 60)).history.map(\.kind) == [.heartbeat])
    }

    /// Skew from the gateway's last exchange (NTP-style), not from one timestamp.
    @Test func skewComesFromTheLastExchange() async throws {
        var status = Self.status(backlog: 0, oldest: 0)
        status.clockMs = 99_999_999  // ignored once an exchange is known
        status.lastExchange.clientSentMs = 12_000
        status.lastExchange.serverReceivedMs = 10_030
        status.lastExchange.serverSentMs = 10_040
        status.lastExchange.clientReceivedMs = 12_080
        let (skew, roundTrip) = FleetRegistry.clock(status, receivedAtMs: 20_000)
        #expect(skew == 2_005)
        #expect(roundTrip == 70)
        status.clearLastExchange()
        #expect(FleetRegistry.clock(status, receivedAtMs: 20_000) == (99_979_999, -1))
    }

    /// A registry written by the previous release (no history, no round trip) opens, keeps its
    /// gateways and gains the new columns.
    @Test func migratesAVersionOneRegistry() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("registry.sqlite")
        let old = try SQLiteDatabase(path: path)
        let blob: [UInt8] = try Self.status(backlog: 7, oldest: 0).serializedBytes()
        try old.withConnection { c throws(SQLiteError) in
            try c.execute("""
                CREATE TABLE gateways (gateway_id TEXT PRIMARY KEY, last_seen_ms INTEGER NOT NULL, status BLOB NOT NULL,
                    readings_synced INTEGER NOT NULL DEFAULT 0, batches_synced INTEGER NOT NULL DEFAULT 0,
                    duplicate_batches INTEGER NOT NULL DEFAULT 0, clock_skew_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
                """)
            _ = try c.run("INSERT INTO gateways (gateway_id, last_seen_ms, status, readings_synced) VALUES ('gw-old', 5, ?, 42)", [blob])
        }
        old.close()
        let registry = try FleetRegistry(path: path)
        defer { registry.close() }
        let view = try #require(try await registry.gateways(nowMs: 5, staleAfterSeconds: 60).first)
        #expect(view.gatewayID == "gw-old")
        #expect(view.readingsSynced == 42)
        #expect(view.backlogReadings == 7)
        try await registry.record(Self.status("gw-old", backlog: 0, oldest: 0), event: .heartbeat, receivedAtMs: 6)
        #expect(try #require(try await registry.gateway("gw-old", nowMs: 6, staleAfterSeconds: 60)).history.count == 1)
        registry.close()
        let reopened = try FleetRegistry(path: path)  // a second open finds version 2 and changes nothing
        defer { reopened.close() }
        #expect(try await reopened.gateways(nowMs: 6, staleAfterSeconds: 60).map(\.readingsSynced) == [42])
        let check = try SQLiteDatabase(path: path, readOnly: true)
        defer { check.close() }
        #expect(try check.withConnection { c throws(SQLiteError) in try c.scalar("PRAGMA user_version")?.int64 } == 3)
    }

    /// Heartbeats in a row are one history entry, so an idle gateway keeps its last refusals.
    @Test func heartbeatsInARowAreOneEntry() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let registry = try FleetRegistry(path: dir.file("registry.sqlite"))
        defer { registry.close() }
        let id = BatchIdentity(gatewayID: "gw-1", epoch: "e", sequence: 1)
        try await registry.record(Self.status(backlog: 1, oldest: 1), event: .refused(id, readings: 1, reason: "down"), receivedAtMs: 1)
        for t in 2...50 { try await registry.record(Self.status(backlog: 1, oldest: 1), event: .heartbeat, receivedAtMs: Int64(t)) }
        try await registry.record(Self.status(backlog: 0, oldest: 0), event: .accepted(id, readings: 1, chain: Self.link), receivedAtMs: 51)
        try await registry.record(Self.status(backlog: 0, oldest: 0), event: .heartbeat, receivedAtMs: 52)
        let history = try #require(try await registry.gateway("gw-1", nowMs: 52, staleAfterSeconds: 60)).history
        #expect(history.map(\.kind) == [.heartbeat, .accepted, .heartbeat, .refused])
        #expect(history.map(\.atMs) == [52, 51, 50, 1])
    }

    /// `/v1/batches` is open to any client: a status with absurd figures must neither crash the
    /// aggregator (overflow traps) nor break the fleet view (JSON has no NaN) nor carry escape
    /// sequences to operators' terminals.
    @Test func hostileStatusIsStoredHarmlessly() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let registry = try FleetRegistry(path: dir.file("registry.sqlite"))
        defer { registry.close() }
        var status = Self.status(backlog: .max, oldest: .max, round: .max, roundOldest: .min)
        status.lastError = "x\u{1B}]52;c;AAAA\u{07}"
        status.agentVersion = String(repeating: "v", count: 10_000)
        status.ingestRate = .nan
        status.sendRate = -.infinity
        status.clockMs = .min
        status.lastExchange.clientSentMs = .max
        status.lastExchange.serverReceivedMs = 1
        status.lastExchange.serverSentMs = 1
        status.lastExchange.clientReceivedMs = .max
        let id = BatchIdentity(gatewayID: "gw-1", epoch: "e", sequence: 1)
        try await registry.record(status, event: .refused(id, readings: 1, reason: "down\u{1B}[2J"), receivedAtMs: 1_000)
        let detail = try #require(try await registry.gateway("gw-1", nowMs: 1_000, staleAfterSeconds: 60))
        let g = detail.gateway
        #expect(g.backlogReadings == 2 << 48 && g.oldestUnsentMs == 0)
        #expect(g.ingestRate == 0 && g.sendRate == 0)
        #expect(g.lastError == "x?]52;c;AAAA?" && g.agentVersion.count == 64)
        #expect(g.clockSkewMs == 0 && g.roundTripMs == -1)
        #expect(detail.history.first?.detail == "down?[2J")
        _ = try JSONEncoder().encode(detail)  // the fleet view still encodes
    }
}

@Suite struct AdminTokenTests {
    @Test func defaultFileIsCreatedOnceAndPrivate() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("admin-token")
        let first = try AdminToken.resolve(.file(path: path, createIfMissing: true))
        let again = try AdminToken.resolve(.file(path: path, createIfMissing: true))
        #expect(first.value == again.value)
        #expect(first.value?.count == 64)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let token = String(decoding: first.value ?? [], as: UTF8.self)
        #expect(first.holder(authorization: "Bearer \(token)") == .unnamed)
        #expect(first.holder(authorization: "bearer \(token) ") == .unnamed)
        #expect(first.holder(authorization: nil) == nil)
        #expect(first.holder(authorization: "Bearer ") == nil)
        #expect(first.holder(authorization: "Bearer \(token.dropLast())x") == nil)
        #expect(first.holder(authorization: "Basic \(token)") == nil)
    }

    @Test func aNamedFileMustExistAndHoldAToken() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        #expect(throws: AggregatorStartError.self) { try AdminToken.resolve(.file(path: dir.file("missing"), createIfMissing: false)) }
        try dir.writeSecret("short", "short\n")
        #expect(throws: AggregatorStartError.self) { try AdminToken.resolve(.file(path: dir.file("short"), createIfMissing: false)) }
    }
}
