import Logging
import Synchronization
import TributaryAdminAPI
import TributaryClickHouse
import TributaryCore
import TributaryWire

/// The big-data platform sink: readings and the dedup ledger in ClickHouse, over its HTTP
/// interface, on a single node or through `Distributed` tables over a sharded cluster.
///
/// ClickHouse has no transactions, so a batch is written in three steps: look its identity up
/// in `batch_ledger`, insert its readings, then its ledger row. A failure between the steps
/// leaves readings without a ledger row; the agent resends, the readings are inserted again
/// with the same sorting key, and ReplacingMergeTree collapses the copies (at once under
/// `FINAL`). The agent is answered only after both inserts returned. Readings spread over more
/// months than the server takes in one insert are inserted in parts, all before the ledger row
/// (`ClickHouseSink+Partitions`); the settings sent suit the server's release
/// (`ClickHouseServerProfile`); docs/clickhouse.md has both.
///
/// On a cluster whose shards have replicas, `Settings.insertQuorum` makes every insert wait
/// until that many replicas of each shard hold it, so an acknowledged batch outlives a node.
///
/// Concurrent batches are coalesced (`CoalescingWriter`): one lookup and two inserts carry
/// every batch that waited while the previous insert ran.
public final class ClickHouseSink: Sink {
    public struct Settings: Sendable {
        /// Each request to ClickHouse, from connect to the last byte. Default 30 s.
        public var timeout: Duration = .seconds(30)
        /// Most agent batches coalesced into one insert. Default 256.
        public var maxInsertBatches = 256
        /// Most readings in one coalesced insert (a single larger batch still goes alone). Default 200,000.
        public var maxInsertReadings = 200_000
        /// PEM file of the CA that signed ClickHouse's certificate (`clickhouse+https`); default:
        /// the system's trusted roots.
        public var caFile: String?
        /// Replicas of each shard that must hold an insert before ClickHouse answers it
        /// (`insert_quorum`); 0, the default, means off: an insert is answered once one replica
        /// of each shard has it, and the others copy it a moment later, so losing that
        /// replica's disk in between loses acknowledged readings. With 2, an acknowledged batch
        /// survives the loss of any one node; but with two replicas a shard then takes no
        /// inserts while one of them is down (503s: the agents keep their backlog), and every
        /// insert waits for a replica to fetch it. 18.16 also refuses a quorum insert into a
        /// shard while the previous one there has not reached its quorum, so concurrent
        /// aggregators refuse each other part of the time (286: waited out briefly, then 503). See docs/sinks.md.
        /// Plain (unreplicated) tables ignore it.
        public var insertQuorum = 0
        /// With `insertQuorum`: how long ClickHouse waits for the quorum before it fails the
        /// insert (`insert_quorum_timeout`). Keep it below `timeout` and below the agents'
        /// request timeout, so a replica that just died (ZooKeeper counts it as alive until its
        /// session times out) costs a clear error, not a timed-out request. Default 10 s.
        public var insertQuorumTimeout: Duration = .seconds(10)
        /// How readings inserts are compressed. Default `auto`: zstd when the server takes zstd
        /// request bodies (asked at start: 18.16 does not), else none.
        public var compression: InsertCompression = .auto
        public init() {}

        /// The settings every insert is sent with. `insert_distributed_sync=1`: inserts through
        /// a `Distributed` table return only once every shard has its rows; without it they
        /// would be queued on the local disk and answered before the shards had them. A plain
        /// table ignores it. `insert_quorum` travels with a synchronous distributed insert to
        /// every shard's replica that takes it. Named as 18.16 knows them; `ClickHouseServerProfile`
        /// adapts them to the server's release.
        var insertSettings: [String: String] {
            var settings = ["insert_distributed_sync": "1"]
            if insertQuorum > 0 {
                settings["insert_quorum"] = "\(insertQuorum)"
                settings["insert_quorum_timeout"] = "\(Int(insertQuorumTimeout / .milliseconds(1)))"
            }
            return settings
        }
    }

    public let endpoint: ClickHouseEndpoint
    private let client: ClickHouseClient
    private let logger: Logger
    private let writer: CoalescingWriter
    private let baseInsertSettings: [String: String]
    private let compression: InsertCompression
    /// How inserts go to this server, decided once the tables are known to exist and the server
    /// was read (`ClickHouseServerProfile`); until then every write first tries `prepare`.
    private let prepared: PreparedPlan

    /// How the body of a readings insert travels (`clickhouse.compression`).
    public enum InsertCompression: String, Sendable, CaseIterable {
        /// zstd when the server takes it, else none.
        case auto
        /// zstd; a server that does not take it is a configuration error.
        case zstd
        /// gzip, which every release takes (18.16 included), at more CPU than zstd.
        case gzip
        case none
    }

    /// The settings, the monthly split and the compression of the inserts, for the server at hand.
    struct InsertPlan: Sendable, Equatable {
        var settings: [String: String]
        var monthsPerInsert: Int?
        var encoding: ContentEncoding = .identity

        init(_ profile: ClickHouseServerProfile, base: [String: String], compression: InsertCompression = .none) throws(SinkError) {
            settings = profile.insertSettings(base)
            monthsPerInsert = profile.monthsPerInsert
            switch compression {
            case .none: encoding = .identity
            case .gzip: encoding = .gzip
            case .auto: encoding = profile.acceptsZstd ? .zstd : .identity
            case .zstd:
                guard profile.acceptsZstd else {
                    throw SinkError(.misconfigured, """
                        ClickHouse \(profile.version) does not take zstd request bodies (clickhouse.compression: zstd); \
                        set it to gzip, auto or none
                        """)
                }
                encoding = .zstd
            }
        }
    }

    private final class PreparedPlan: Sendable {
        private let plan = Mutex<InsertPlan?>(nil)
        var current: InsertPlan? { plan.withLock { $0 } }
        func set(_ value: InsertPlan?) { plan.withLock { $0 = value } }
    }

    public var description: String { endpoint.description }

    public init(endpoint: ClickHouseEndpoint, settings: Settings = .init(), logger: Logger) {
        self.endpoint = endpoint
        self.logger = logger
        client = ClickHouseClient(endpoint: endpoint, timeout: settings.timeout, caFile: settings.caFile)
        let database = endpoint.database
        let client = self.client
        let base = settings.insertSettings
        baseInsertSettings = base
        let compression = settings.compression
        self.compression = compression
        let prepared = PreparedPlan()
        self.prepared = prepared
        let witness = RefusalWitness()
        writer = CoalescingWriter(maxBatches: settings.maxInsertBatches, maxReadings: settings.maxInsertReadings) { group in
            var plan = prepared.current
            if plan == nil {
                do throws(SinkError) {
                    let (_, profile) = try await Self.createTables(client: client, database: database)
                    plan = try InsertPlan(profile, base: base, compression: compression)
                    prepared.set(plan)
                } catch {
                    return group.map { _ in .failure(error) }
                }
            }
            return await Self.write(group, client: client, database: database, insertSettings: plan!.settings,
                                    monthsPerInsert: plan!.monthsPerInsert, encoding: plan!.encoding, witness: witness,
                                    profileIsStale: { prepared.set(nil) })
        }
    }

    public func prepare() async throws(SinkError) {
        let (engine, profile) = try await Self.createTables(client: client, database: endpoint.database)
        let plan = try InsertPlan(profile, base: baseInsertSettings, compression: compression)
        prepared.set(plan)
        let settings: [String] = plan.settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let months: String = plan.monthsPerInsert.map { String($0) } ?? "all"
        logger.info("ClickHouse sink ready", metadata: [
            "sink": "\(endpoint)", "readings_engine": "\(engine)", "server_version": "\(profile.version)",
            "insert_settings": "\(settings.joined(separator: "&"))", "months_per_insert": "\(months)",
            "insert_compression": "\(plan.encoding == .identity ? "none" : plan.encoding.rawValue)",
        ])
    }

    /// Ready once the tables were checked (created now if the server was away at start) and the
    /// server answers a query.
    public func readinessProblem() async -> String? {
        do {
            if prepared.current == nil { try await prepare() }
            _ = try await client.scalar("SELECT 1")
            return nil
        } catch {
            return "\(error)"
        }
    }

    public func write(_ batch: IncomingBatch) async throws(SinkError) -> SinkWriteResult {
        try await writer.write(batch).get()
    }

    public var writeStats: SinkWriteStats { writer.stats }

    public func close() async {
        await client.shutdown()
    }

    /// Creates the tables when missing. Where they exist (made by an operator, e.g.
    /// `Distributed` ones over a cluster from `deploy/clickhouse/cluster/`), nothing is run, so
    /// the aggregator's user needs no DDL rights then. Returns the engine of `readings`, and the
    /// server's profile (its release and partition limit), which decides how inserts are sent.
    @discardableResult
    static func createTables(client: ClickHouseClient, database: String) async throws(SinkError) -> (engine: String, profile: ClickHouseServerProfile) {
        do {
            let profile = try await ClickHouseServerProfile.read(client: client)
            var engines: [String: String] = [:]
            for row in try await client.select(tablesQuery(database: database)) where row.count == 2 {
                if let name = row[0], let engine = row[1] { engines[name] = engine }
            }
            if let engine = engines["readings"], engines["batch_ledger"] != nil { return (engine, profile) }
            if engines["readings_local"] != nil && engines["readings"] == nil {
                // Shard tables without the Distributed ones: creating plain tables here would
                // keep every reading on this node, unsharded.
                throw SinkError(.misconfigured, """
                    ClickHouse at \(client.endpoint) has \(database).readings_local but no \(database).readings: \
                    run deploy/clickhouse/cluster/distributed.sql on this node first
                    """)
            }
            for statement in ClickHouseSchema.tables(database: database) {
                try await client.execute(statement)
            }
            return (engines["readings"] ?? "ReplacingMergeTree", profile)
        } catch let error as ClickHouseError {
            throw SinkError(error)
        } catch let error as SinkError {
            throw error
        } catch {
            throw SinkError(.unavailable, "\(error)")
        }
    }

    /// The tables of the database and their engines (rows of name, engine).
    static func tablesQuery(database: String) -> String {
        "SELECT name, engine FROM system.tables WHERE database = \(ClickHouseClient.quote(database))"
    }

    /// The columns of the sink's tables (rows of table, name, type), for `ClickHouseSchema.columnProblem`.
    static func columnsQuery(database: String) -> String {
        """
        SELECT table, name, type FROM system.columns
        WHERE database = \(ClickHouseClient.quote(database)) AND table IN ('readings', 'batch_ledger')
        """
    }

    /// Writes the group and answers each batch. `profileIsStale` is called when the server
    /// refused a setting (115: an older release now answers at this address) or the partition
    /// limit (252: it was lowered), so the next write reads the server again. `witness` decides
    /// when a refusal is the batch's fault (see `RefusalWitness`).
    static func write(_ group: [IncomingBatch], client: ClickHouseClient, database: String,
                      insertSettings: [String: String] = Settings().insertSettings, monthsPerInsert: Int? = nil,
                      encoding: ContentEncoding = .identity,
                      witness: RefusalWitness = RefusalWitness(), profileIsStale: @Sendable () -> Void = {},
                      judging: Bool = true) async -> [CoalescingWriter.Outcome] {
        switch await writeTogether(group, client: client, database: database, insertSettings: insertSettings,
                                   monthsPerInsert: monthsPerInsert, encoding: encoding) {
        case .success(let results):
            witness.noteWritten()
            return results.map { .success($0) }
        case .failure(let error) where error.kind == .server && group.count > 1 && !quorumCodes.contains(error.code ?? 0)
                                        && !profileCodes.contains(error.code ?? 0):
            // ClickHouse refused a statement for the group. That may be one batch's fault (a
            // reading an operator's check refuses): write each alone, so only that one is
            // refused and the others go through.
            var outcomes: [CoalescingWriter.Outcome] = []
            for batch in group {
                outcomes += await write([batch], client: client, database: database, insertSettings: insertSettings,
                                        monthsPerInsert: monthsPerInsert, encoding: encoding, witness: witness,
                                        profileIsStale: profileIsStale, judging: false)
            }
            // Refused while others of the same group went in: the batch's own fault. Refused
            // with none going in: perhaps the table's (a column that fails every row), judged
            // as a lone batch is.
            let othersWent = outcomes.contains { if case .success = $0 { true } else { false } }
            return zip(group, outcomes).map { batch, outcome in
                guard case .failure(let error) = outcome, error.kind == .refused, !othersWent else { return outcome }
                return witness.judge(batch.identity) ? outcome : .failure(SinkError(.unavailable, RefusalWitness.notYet(error.message)))
            }
        case .failure(let error):
            if error.kind == .server, profileCodes.contains(error.code ?? 0) { profileIsStale() }
            if group.count == 1, let reason = await refusal(error, client: client, database: database) {
                if !judging || witness.judge(group[0].identity) { return [.failure(SinkError(.refused, reason))] }
                return [.failure(SinkError(.unavailable, RefusalWitness.notYet(reason)))]
            }
            return group.map { _ in .failure(SinkError(error)) }
        }
    }

    /// Refusals that say the sink's picture of the server is out of date: an unknown setting
    /// (115) and too many partitions for one insert (252). Neither is a batch's fault: the
    /// server is read again and the resend goes out as it now needs.
    static let profileCodes: Set<Int> = [115, 252]

    /// Refusals that are the batch's own fault, given that the tables have the sink's columns:
    /// a value ClickHouse cannot take (type mismatch, conversion or parse failure, incorrect
    /// data, too large a string, argument out of bounds), or an operator's check that refuses
    /// it (a CHECK constraint, 469; a `throwIf` in a MATERIALIZED column, 395). The same batch
    /// would be refused on every resend.
    static let refusalCodes: Set<Int> = [6, 27, 53, 69, 70, 72, 117, 131, 395, 469]

    /// Why ClickHouse will never take this batch, when `error`, for the batch written alone, says
    /// so. Only when the tables still have the sink's columns with the sink's types: one an
    /// operator changed would refuse every batch, which is the operator's to fix, not a reason to
    /// set the fleet's batches aside (it stays a 503). Nil when the check itself fails.
    static func refusal(_ error: ClickHouseError, client: ClickHouseClient, database: String) async -> String? {
        guard error.kind == .server, let code = error.code, refusalCodes.contains(code) else { return nil }
        let rows: [[String?]]
        do {
            rows = try await client.select(columnsQuery(database: database))
        } catch {
            return nil
        }
        guard ClickHouseSchema.columnProblem(database: database, found: rows) == nil else { return nil }
        return "ClickHouse refuses this batch for good: \(error.message)"
    }

    /// Refusals of a quorum insert that are no batch's fault, so writing the group's batches one
    /// by one would only repeat them (each after up to `insertQuorumTimeout`): too few live
    /// replicas (285), the previous quorum insert not yet complete or another one under way
    /// (286), the quorum not reached in time (319, the rows may be on one replica).
    static let quorumCodes: Set<Int> = [285, 286, 319]

    /// 18.16 runs one quorum insert at a time per table and shard and refuses the others at
    /// once (286). With several aggregators on one cluster that is contention, not a fault: the
    /// insert is tried again after a short jittered pause (20 ms doubling to 640 ms, about 1.3 s
    /// in all) before the batches are answered 503, which would send their gateways to another
    /// aggregator that meets the same contention. A refused insert wrote nothing.
    static func waitingOutOtherQuorumInserts(_ insert: () async throws(ClickHouseError) -> Void) async throws(ClickHouseError) {
        var pauseMs = 20
        while true {
            do {
                return try await insert()
            } catch where error.code == 286 && pauseMs <= 640 {
                try? await Task.sleep(for: .milliseconds(Int.random(in: pauseMs / 2...pauseMs)))
                pauseMs *= 2
            }
        }
    }

    /// One ledger lookup and, for the batches not written before, their readings (in one insert
    /// per `monthsPerInsert` months, see `rowBinaryParts`), then their ledger rows. The ledger
    /// rows go in only once every part is in: a failure between parts leaves the identity
    /// unknown to the ledger, so the resend is written again whole, never answered "duplicate"
    /// with parts missing; the parts written twice collapse under `FINAL`.
    static func writeTogether(_ group: [IncomingBatch], client: ClickHouseClient, database: String,
                              insertSettings: [String: String], monthsPerInsert: Int? = nil,
                              encoding: ContentEncoding = .identity) async -> Result<[SinkWriteResult], ClickHouseError> {
        do throws(ClickHouseError) {
            let known = try await ledgerDigests(of: group, client: client, database: database)
            // The first of several copies of one identity in the group is written; the others
            // are answered like a resend.
            var firstInGroup: [BatchIdentity: UInt64] = [:]
            var results: [SinkWriteResult] = []
            var toWrite: [IncomingBatch] = []
            for batch in group {
                if let digest = known[batch.identity] ?? firstInGroup[batch.identity] {
                    results.append(digest == batch.digest ? .duplicate : .conflict)
                } else {
                    firstInGroup[batch.identity] = batch.digest
                    toWrite.append(batch)
                    results.append(.accepted)
                }
            }
            if !toWrite.isEmpty {
                for part in rowBinaryParts(of: toWrite, monthsPerInsert: monthsPerInsert) {
                    // Compressed once, not again for each retry of the insert. At zstd's and
                    // gzip's fastest level: the rows are repetitive, and the aggregator's CPU is
                    // what compression costs.
                    let body = Compression.compress(part, encoding: encoding, level: 1)
                    try await waitingOutOtherQuorumInserts { () throws(ClickHouseError) in
                        try await insertReadingRows(body, client: client, database: database, settings: insertSettings, encodedAs: encoding)
                    }
                }
                try await waitingOutOtherQuorumInserts { () throws(ClickHouseError) in
                    try await insertLedgerRows(for: toWrite, client: client, database: database, settings: insertSettings)
                }
            }
            return .success(results)
        } catch {
            return .failure(error)
        }
    }

    /// The ledger's digest for each identity of the group that was written before. Identities
    /// are asked for in chunks, to stay far below ClickHouse's query size limit (256 KiB).
    static func ledgerDigests(of group: [IncomingBatch], client: ClickHouseClient, database: String) async throws(ClickHouseError) -> [BatchIdentity: UInt64] {
        let identities = Array(Set(group.map(\.identity)))
        var digests: [BatchIdentity: UInt64] = [:]
        for start in stride(from: 0, to: identities.count, by: 500) {
            let rows = try await client.select(ledgerQuery(database: database, identities: identities[start..<min(start + 500, identities.count)]))
            for row in rows where row.count == 4 {
                guard let gateway = row[0], let epoch = row[1], let sequence = row[2].flatMap({ UInt64($0) }),
                      let digest = row[3].flatMap({ UInt64($0) }) else { continue }
                digests[BatchIdentity(gatewayID: gateway, epoch: epoch, sequence: sequence)] = digest
            }
        }
        return digests
    }

    /// The ledger lookup for `identities` (answered as rows of gateway, epoch, sequence, digest).
    static func ledgerQuery(database: String, identities: some Sequence<BatchIdentity>) -> String {
        let tuples = identities.map { "(\(ClickHouseClient.quote($0.gatewayID)), \(ClickHouseClient.quote($0.epoch)), \($0.sequence))" }
        return """
            SELECT gateway_id, epoch, sequence, digest FROM \(database).batch_ledger
            WHERE (gateway_id, epoch, sequence) IN (\(tuples.joined(separator: ", ")))
            """
    }

    /// The columns of `readings`, in the order `rowBinary(of:)` writes them.
    public static let readingColumns = """
        gateway_id, sensor_id, metric, time_ms, received_ms, value, value_int, value_text, value_type, unit, labels, \
        topic, batch_gateway_id, batch_epoch, batch_seq, batch_index
        """

    /// Inserts the batches' readings, split by month when `monthsPerInsert` asks (see
    /// `rowBinaryParts`), one part after the other.
    static func insertReadings(of batches: [IncomingBatch], client: ClickHouseClient, database: String,
                               settings: [String: String] = Settings().insertSettings, monthsPerInsert: Int? = nil) async throws(ClickHouseError) {
        for part in rowBinaryParts(of: batches, monthsPerInsert: monthsPerInsert) {
            try await insertReadingRows(part, client: client, database: database, settings: settings)
        }
    }

    /// Inserts RowBinary rows; `body` is them compressed as `encoding` says (as they are, for
    /// `.identity`).
    static func insertReadingRows(_ body: [UInt8], client: ClickHouseClient, database: String,
                                  settings: [String: String], encodedAs encoding: ContentEncoding = .identity) async throws(ClickHouseError) {
        try await client.insert(readingsInsert(database: database), rows: body,
                                settings: settings, contentEncoding: encoding == .identity ? nil : encoding.rawValue)
    }

    /// The readings insert; the rows are `rowBinaryParts(of:monthsPerInsert:)`.
    static func readingsInsert(database: String) -> String {
        "INSERT INTO \(database).readings (\(readingColumns)) FORMAT RowBinary"
    }

    /// The batches' readings as `readings` rows, in RowBinary, not text: doubles must arrive
    /// bit for bit (see `RowBinary`). Public for the benchmark's direct insert of the same rows.
    public static func rowBinary(of batches: [IncomingBatch]) -> [UInt8] {
        var rows = RowBinary.Writer(reservingCapacity: batches.reduce(0) { $0 + $1.readings.count } * 160)
        for batch in batches {
            for (index, reading) in batch.readings.enumerated() { appendRow(reading, index: index, of: batch.identity, to: &rows) }
        }
        return rows.bytes
    }

    /// One `readings` row, in the order of `readingColumns`.
    static func appendRow(_ r: Reading, index: Int, of id: BatchIdentity, to rows: inout RowBinary.Writer) {
        rows.string(r.gatewayID)
        rows.string(r.sensorID)
        rows.string(r.metric)
        rows.int64(r.timeMs)
        rows.int64(r.receivedAtMs)
        rows.float64(r.value.numericValue)
        rows.int64(r.value.exactIntegerValue)
        rows.string(r.value.textValue)
        rows.string(r.value.typeName)
        rows.string(r.unit)
        rows.string(LabelsJSON.encode(r.labels))
        rows.string(r.topic)
        rows.string(id.gatewayID)
        rows.string(id.epoch)
        rows.uint64(id.sequence)
        rows.uint32(UInt32(index))
    }

    /// The ledger insert; the rows are `ledgerRows(for:)`.
    static func ledgerInsert(database: String) -> String {
        "INSERT INTO \(database).batch_ledger (gateway_id, epoch, sequence, digest, reading_count, written_ms) FORMAT TabSeparated"
    }

    /// The batches' ledger rows, in TabSeparated.
    static func ledgerRows(for batches: [IncomingBatch]) -> [UInt8] {
        var rows = TabSeparated.Writer()
        for batch in batches {
            rows.field(batch.identity.gatewayID)
            rows.field(batch.identity.epoch)
            rows.field(batch.identity.sequence)
            rows.field(batch.digest)
            rows.field(Int64(batch.readings.count))
            rows.field(batch.receivedAtMs)
            rows.endRow()
        }
        return rows.bytes
    }

    static func insertLedgerRows(for batches: [IncomingBatch], client: ClickHouseClient, database: String,
                                 settings: [String: String]) async throws(ClickHouseError) {
        try await client.insert(ledgerInsert(database: database), rows: ledgerRows(for: batches), settings: settings)
    }
}

extension SinkError {
    init(_ error: ClickHouseError) {
        self.init(error.kind == .authentication || error.kind == .tls ? .misconfigured : .unavailable, error.message)
    }
}

/// When a refusal is the batch's fault rather than the table's. A column an operator added that
/// fails on every row (then dropped again) refuses every batch with the same codes a bad value
/// does; setting the whole fleet's batches aside for a five-second mistake took an operator on
/// every gateway (attack round 10). So a batch refused alone is answered 503 the first time, and
/// set aside only when it is refused again after other batches were written meanwhile: the
/// table takes data, this batch it does not. Refused while others of its own group went in, it
/// is set aside at once.
final class RefusalWitness: Sendable {
    private struct State {
        var written: UInt64 = 0
        /// Batches refused once, with `written` at the time.
        var suspects: [BatchIdentity: UInt64] = [:]
    }

    private let state = Mutex(State())
    /// Suspects kept at most; past it they start again (each is then answered 503 once more).
    static let maxSuspects = 10_000

    func noteWritten() { state.withLock { $0.written &+= 1 } }

    /// True when the batch is to be refused for good now: it was refused before, and some write
    /// succeeded since.
    func judge(_ identity: BatchIdentity) -> Bool {
        state.withLock { s in
            if let at = s.suspects[identity] {
                guard s.written > at else { return false }
                s.suspects[identity] = nil
                return true
            }
            if s.suspects.count >= Self.maxSuspects { s.suspects.removeAll() }
            s.suspects[identity] = s.written
            return false
        }
    }

    static func notYet(_ reason: String) -> String {
        "\(reason) (answered 503 until the refusal repeats after other batches were written: a problem of the table refuses them all)"
    }
}
