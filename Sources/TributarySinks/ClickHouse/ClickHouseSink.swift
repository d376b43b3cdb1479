import Logging
import Synchronization
import TributaryAdminAPI
import TributaryClickHouse
import TributaryCore

/// The big-data platform sink: readings and the dedup ledger in ClickHouse, over its HTTP
/// interface, on a single node or through `Distributed` tables over a sharded cluster.
///
/// ClickHouse has no transactions, so a batch is written in three steps: look its identity up
/// in `batch_ledger`, insert its readings, then its ledger row. A failure between the steps
/// leaves readings without a ledger row; the agent resends, the readings are inserted again
/// with the same sorting key, and ReplacingMergeTree collapses the copies (at once under
/// `FINAL`). The agent is answered only after both inserts returned.
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
        public init() {}

        /// The settings every insert is sent with. `insert_distributed_sync=1`: inserts through
        /// a `Distributed` table return only once every shard has its rows; without it they
        /// would be queued on the local disk and answered before the shards had them. A plain
        /// table ignores it. `insert_quorum` travels with a synchronous distributed insert to
        /// every shard's replica that takes it.
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
    /// Set once the tables are known to exist; until then every write first tries `prepare`.
    private let prepared: PreparedFlag

    private final class PreparedFlag: Sendable {
        private let value = Atomic<Bool>(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
        func set() { value.store(true, ordering: .releasing) }
    }

    public var description: String { endpoint.description }

    public init(endpoint: ClickHouseEndpoint, settings: Settings = .init(), logger: Logger) {
        self.endpoint = endpoint
        self.logger = logger
        client = ClickHouseClient(endpoint: endpoint, timeout: settings.timeout, caFile: settings.caFile)
        let database = endpoint.database
        let client = self.client
        let insertSettings = settings.insertSettings
        let prepared = PreparedFlag()
        self.prepared = prepared
        writer = CoalescingWriter(maxBatches: settings.maxInsertBatches, maxReadings: settings.maxInsertReadings) { group in
            if !prepared.isSet {
                do throws(SinkError) {
                    try await Self.createTables(client: client, database: database)
                    prepared.set()
                } catch {
                    return group.map { _ in .failure(error) }
                }
            }
            return await Self.write(group, client: client, database: database, insertSettings: insertSettings)
        }
    }

    public func prepare() async throws(SinkError) {
        let engine = try await Self.createTables(client: client, database: endpoint.database)
        prepared.set()
        logger.info("ClickHouse sink ready", metadata: ["sink": "\(endpoint)", "readings_engine": "\(engine)"])
    }

    /// Ready once the tables were checked (created now if the server was away at start) and the
    /// server answers a query.
    public func readinessProblem() async -> String? {
        do {
            if !prepared.isSet { try await prepare() }
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
    /// the aggregator's user needs no DDL rights then. Returns the engine of `readings`.
    @discardableResult
    static func createTables(client: ClickHouseClient, database: String) async throws(SinkError) -> String {
        do {
            var engines: [String: String] = [:]
            for row in try await client.select("""
                SELECT name, engine FROM system.tables WHERE database = \(ClickHouseClient.quote(database))
                """) where row.count == 2 {
                if let name = row[0], let engine = row[1] { engines[name] = engine }
            }
            if let engine = engines["readings"], engines["batch_ledger"] != nil { return engine }
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
            return engines["readings"] ?? "ReplacingMergeTree"
        } catch let error as ClickHouseError {
            throw SinkError(error)
        } catch let error as SinkError {
            throw error
        } catch {
            throw SinkError(.unavailable, "\(error)")
        }
    }

    static func write(_ group: [IncomingBatch], client: ClickHouseClient, database: String,
                      insertSettings: [String: String] = Settings().insertSettings) async -> [CoalescingWriter.Outcome] {
        switch await writeTogether(group, client: client, database: database, insertSettings: insertSettings) {
        case .success(let results):
            return results.map { .success($0) }
        case .failure(let error) where error.kind == .server && group.count > 1 && !quorumCodes.contains(error.code ?? 0):
            // ClickHouse refused a statement for the group. That may be one batch's fault (say,
            // timestamps spread over too many partitions): write each alone, so only that one
            // waits and the others go through.
            var outcomes: [CoalescingWriter.Outcome] = []
            for batch in group { outcomes += await write([batch], client: client, database: database, insertSettings: insertSettings) }
            return outcomes
        case .failure(let error):
            return group.map { _ in .failure(SinkError(error)) }
        }
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

    /// One ledger lookup and (for the batches not written before) two inserts for the group.
    static func writeTogether(_ group: [IncomingBatch], client: ClickHouseClient, database: String,
                              insertSettings: [String: String]) async -> Result<[SinkWriteResult], ClickHouseError> {
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
                try await waitingOutOtherQuorumInserts { () throws(ClickHouseError) in
                    try await insertReadings(of: toWrite, client: client, database: database, settings: insertSettings)
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
            let tuples = identities[start..<min(start + 500, identities.count)].map {
                "(\(ClickHouseClient.quote($0.gatewayID)), \(ClickHouseClient.quote($0.epoch)), \($0.sequence))"
            }
            let rows = try await client.select("""
                SELECT gateway_id, epoch, sequence, digest FROM \(database).batch_ledger
                WHERE (gateway_id, epoch, sequence) IN (\(tuples.joined(separator: ", ")))
                """)
            for row in rows where row.count == 4 {
                guard let gateway = row[0], let epoch = row[1], let sequence = row[2].flatMap({ UInt64($0) }),
                      let digest = row[3].flatMap({ UInt64($0) }) else { continue }
                digests[BatchIdentity(gatewayID: gateway, epoch: epoch, sequence: sequence)] = digest
            }
        }
        return digests
    }

    /// The columns of `readings`, in the order `rowBinary(of:)` writes them.
    public static let readingColumns = """
        gateway_id, sensor_id, metric, time_ms, received_ms, value, value_int, value_text, value_type, unit, labels, \
        topic, batch_gateway_id, batch_epoch, batch_seq, batch_index
        """

    static func insertReadings(of batches: [IncomingBatch], client: ClickHouseClient, database: String,
                               settings: [String: String] = Settings().insertSettings) async throws(ClickHouseError) {
        try await client.insert("INSERT INTO \(database).readings (\(readingColumns)) FORMAT RowBinary",
                                rows: rowBinary(of: batches), settings: settings)
    }

    /// The batches' readings as `readings` rows, in RowBinary, not text: doubles must arrive
    /// bit for bit (see `RowBinary`). Public for the benchmark's direct insert of the same rows.
    public static func rowBinary(of batches: [IncomingBatch]) -> [UInt8] {
        var rows = RowBinary.Writer(reservingCapacity: batches.reduce(0) { $0 + $1.readings.count } * 160)
        for batch in batches {
            let id = batch.identity
            for (index, r) in batch.readings.enumerated() {
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
        }
        return rows.bytes
    }

    static func insertLedgerRows(for batches: [IncomingBatch], client: ClickHouseClient, database: String,
                                 settings: [String: String]) async throws(ClickHouseError) {
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
        try await client.insert("""
            INSERT INTO \(database).batch_ledger (gateway_id, epoch, sequence, digest, reading_count, written_ms) FORMAT TabSeparated
            """, rows: rows.bytes, settings: settings)
    }
}

extension SinkError {
    init(_ error: ClickHouseError) {
        self.init(error.kind == .authentication || error.kind == .tls ? .misconfigured : .unavailable, error.message)
    }
}
