import Foundation
import Testing
import TributaryAggregator
import TributarySinks
import TributaryClickHouse
import TributaryCore
import TributarySimulator
import TributaryRuntime
import TributaryTesting

/// The ClickHouse sink against real clickhouse-server processes (Debian's 18.16 in CI), with the
/// real aggregator, agent and broker; each test ends with the conservation check read through
/// `FINAL`, as `tributary-sim verify --sink clickhouse://...` does.
@Suite("ClickHouse sink", .serialized, .enabled(if: ClickHouseServer.unavailableReason == nil, "clickhouse-server is not installed"))
struct ClickHouseTests {
    static let fast = FaultTests.fast

    /// A harness whose aggregator writes to a fresh ClickHouse server in the harness directory.
    static func harness(_ gatewayID: String, aggregatorSettings: [String] = fast, aggregatorConfig: [String] = [],
                        sinkPort: Int? = nil) async throws -> (ProcessHarness, ClickHouseServer) {
        let dir = try TemporaryDirectory(prefix: "tributary-clickhouse")
        let server = try await ClickHouseServer(directory: dir.file("clickhouse"))
        // The aggregator may reach the server through a proxy; the checks read it directly.
        let url = server.url(port: sinkPort)
        let harness = try await ProcessHarness(gatewayID: gatewayID, aggregatorSettings: aggregatorSettings,
                                               aggregatorConfig: aggregatorConfig, sinkURL: url, verifySinkURL: server.url(),
                                               directory: dir)
        return (harness, server)
    }

    static func client(_ server: ClickHouseServer, password: String? = nil) -> ClickHouseClient {
        ClickHouseClient(endpoint: try! ClickHouseEndpoint(url: server.url(password: password)))
    }

    /// A count from a direct query, with the server's password or `password`.
    static func count(_ server: ClickHouseServer, _ sql: String, password: String? = nil) async throws -> Int {
        let client = client(server, password: password)
        defer { Task { await client.shutdown() } }
        return Int(try await client.scalar(sql) ?? "") ?? -1
    }

    /// Runs the aggregator executable against `sink` until it exits; returns its exit code and log.
    static func runAggregator(in dir: TemporaryDirectory, sink: String) async throws -> (exitCode: Int32, log: String) {
        let process = try ChildProcess(
            executable: try ProcessHarness.executable("tributary-aggregator"),
            arguments: ["--listen", "127.0.0.1:\(try FreePort.allocate())", "--data-dir", dir.file("aggregator"), "--sink", sink],
            logFile: dir.file("aggregator.log"))
        let status = await process.wait()
        return (ProcessHarness.exitCode(status), try String(contentsOfFile: dir.file("aggregator.log"), encoding: .utf8))
    }

    @Test("readings flow into ClickHouse: tables created on start, every reading once, typed values")
    func normalFlow() async throws {
        let (harness, server) = try await Self.harness("gw-ch-flow")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(2000, rate: 500).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")

        // No retries happened, so even without FINAL every reading is there once.
        #expect(try await Self.count(server, "SELECT count() FROM tributary.readings") == manifest.entries.count)
        #expect(try await Self.count(server, """
            SELECT count() FROM system.tables WHERE database = 'tributary' AND engine = 'ReplacingMergeTree'
                AND name IN ('readings', 'batch_ledger')
            """) == 2)
        let gateway = try #require(try await harness.gateway())
        #expect(try await Self.count(server, "SELECT count() FROM tributary.batch_ledger FINAL") == Int(gateway.batchesSynced))
        #expect(try await Self.count(server, """
            SELECT count() FROM tributary.readings
            WHERE (value_type IN ('number', 'integer') AND value IS NOT NULL) OR (value_type = 'boolean' AND value_int IN (0, 1))
                OR (value_type = 'text' AND value_text IS NOT NULL)
            """) == manifest.entries.count, "every row carries its value in the column its type names")
        let writes = try await harness.fleet().sinkWrites
        #expect(writes.batches == Int(gateway.batchesSynced) && writes.readings == manifest.entries.count, "\(writes)")
        await harness.stop(agent, aggregator)
        await server.stop()
    }

    @Test("a batch ClickHouse refuses for its data (an operator's check): 422, set aside on its gateway with the reason; the readings before and after it arrive exactly once")
    func refusedForGoodIsSetAside() async throws {
        let (harness, server) = try await Self.harness("gw-ch-refuse")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let client = Self.client(server)
        defer { Task { await client.shutdown() } }
        try await eventually("the sink made its tables") {
            try await Self.count(server, "SELECT count() FROM system.tables WHERE database = 'tributary' AND name = 'readings'") == 1
        }
        // The operator's check: ClickHouse itself refuses a reading whose text says so (code 395).
        try await client.execute("""
            ALTER TABLE tributary.readings ADD COLUMN checked UInt8 MATERIALIZED throwIf(ifNull(value_text, '') = 'refuse me')
            """)
        let agent = try await harness.startAgent()
        let before = try await harness.publish(300, rate: 300).value
        #expect(try await harness.verifyWhenComplete(before).passed)

        // One message alone in its batch, which ClickHouse will never take.
        try await harness.publishOne(topic: "sensors/gw-ch-refuse/odd-one", payload: "{\"ts\": \(WallClock.nowMs()), \"state\": \"refuse me\"}")
        // Refused alone, it is answered 503 until the refusal repeats after other batches were
        // written (a broken table refuses every batch alike): another gateway's batches go in
        // meanwhile, as a fleet's would.
        var others: [Manifest.Entry] = []
        try await eventually("the gateway set the batch aside") {
            var options = FleetSimulator.Options(aggregator: "http://127.0.0.1:\(harness.httpPort)", gateways: 1)
            options.gatewayPrefix = "gw-ch-other-\(others.count)"
            options.batchesPerGateway = 1
            options.readingsPerBatch = 5
            options.rate = 1000
            let path = harness.dir.file("other-\(others.count).jsonl")
            _ = try await FleetSimulator(options: options, logger: harness.logger).run(manifestPath: path)
            others += try Manifest.read(from: path).entries
            return (try await harness.gateway())?.setAsideBatches == 1
        }
        let detail = try #require(try await harness.gateway())
        #expect(detail.readingsSynced == UInt64(before.entries.count), "nothing of the refused batch counted as synced")

        // Its later batches are not held back by it.
        let after = try await harness.publish(300, rate: 300).value
        let both = Manifest(messagesPublished: before.messagesPublished + after.messagesPublished, entries: before.entries + after.entries + others)
        let report = try await harness.verifyWhenComplete(both)
        #expect(report.passed, "\(report)")
        #expect(try await Self.count(server, "SELECT count() FROM tributary.readings WHERE value_text = 'refuse me'") == 0)
        #expect((try await harness.gateway())?.setAsideBatches == 1)
        await harness.stop(agent, aggregator)
        await server.stop()
    }

    @Test("ClickHouse killed (SIGKILL) and restarted mid-stream: 503s, then 0 missing, 0 duplicates after FINAL")
    func clickHouseKilled() async throws {
        let (harness, server) = try await Self.harness("gw-ch-kill")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let publishing = try harness.publish(3000, rate: 600)
        for _ in 0..<2 {
            try await Task.sleep(for: .seconds(1.5))
            await server.kill()
            try await Task.sleep(for: .seconds(1.5))
            try await server.start()
        }
        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        let admission = try await harness.fleet().admission
        #expect(admission.sinkFailures > 0 && admission.consecutiveSinkFailures == 0,
                "the outage was answered 503, and the sink is healthy again: \(admission)")
        await harness.stop(agent, aggregator)
        await server.stop()
    }

    @Test("a slow ClickHouse: 429s reach the agent, waiting batches are coalesced into larger inserts, nothing lost")
    func slowClickHouse() async throws {
        // The aggregator reaches ClickHouse through the fault proxy, at 256 KB/s: slower than the
        // ~450 KB/s of rows the agent sends.
        let proxyPort = try FreePort.allocate()
        let (harness, server) = try await Self.harness(
            "gw-ch-slow", aggregatorSettings: Self.fast + ["max_in_flight_batches: 8"],
            aggregatorConfig: ["limits:", "  max_in_flight_batches: 6"], sinkPort: proxyPort)
        defer { harness.dir.remove() }
        let proxy = try await harness.startProxy(listen: proxyPort, target: server.httpPort, ["--bandwidth", "256k", "--latency", "10ms"])
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let publishing = try harness.publish(3000, rate: 600)
        var largestBacklog: UInt64 = 0
        while try await harness.gateway()?.readingsSynced ?? 0 < 3000 * 5 / 2 {
            largestBacklog = max(largestBacklog, try await harness.gateway()?.backlogReadings ?? 0)
            try await Task.sleep(for: .milliseconds(200))
        }
        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        let fleet = try await harness.fleet()
        #expect(fleet.admission.busyRefusals > 0, "backpressure reached the agent as 429: \(fleet.admission)")
        #expect(fleet.admission.peakInFlightBatches <= 6, "\(fleet.admission)")
        #expect(fleet.sinkWrites.largestWriteBatches > 1 && fleet.sinkWrites.writes < fleet.sinkWrites.batches,
                "batches that waited were written together: \(fleet.sinkWrites)")
        #expect(largestBacklog > 250, "the gateway held a backlog while the sink was slow (largest \(largestBacklog))")
        await harness.stop(agent, aggregator, proxy)
        await server.stop()
    }

    @Test("wrong credentials at start: the aggregator exits 1 and says which user was refused")
    func wrongCredentialsAtStart() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-clickhouse")
        defer { dir.remove() }
        let server = try await ClickHouseServer(directory: dir.file("clickhouse"))
        let (exitCode, log) = try await Self.runAggregator(in: dir, sink: server.url(password: "not-the-password"))
        #expect(exitCode == 1, "\(log)")
        #expect(log.contains("refused the credentials of user 'tributary'") && !log.contains("not-the-password"), "\(log)")
        await server.stop()
    }

    @Test("credentials revoked while running: nothing acknowledged, the error is shown, then everything arrives once")
    func credentialsRevoked() async throws {
        let (harness, server) = try await Self.harness("gw-ch-auth")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let first = try await harness.publish(500, rate: 500).value
        #expect(try await harness.verifyWhenComplete(first).passed)

        try server.writeUsers(password: "rotated")
        try await eventually(timeout: .seconds(30), "ClickHouse rereads its users file") {
            let client = Self.client(server)
            defer { Task { await client.shutdown() } }
            do {
                _ = try await client.scalar("SELECT 1")
                return false
            } catch {
                return (error as? ClickHouseError)?.kind == .authentication
            }
        }
        let synced = try #require(try await harness.gateway()).readingsSynced
        let second = try await harness.publish(500, rate: 500).value
        try await eventually("the aggregator reports the refused credentials") {
            try await harness.fleet().admission.lastSinkError.contains("refused the credentials")
        }
        try await Task.sleep(for: .seconds(2))
        // The fleet view keeps a gateway's last accepted status while its batches are refused.
        #expect(try #require(try await harness.gateway()).readingsSynced == synced, "nothing was acknowledged")
        #expect(try await Self.count(server, "SELECT count() FROM tributary.readings", password: "rotated") == first.entries.count,
                "nothing was written")

        try server.writeUsers(password: server.password)
        try await eventually(timeout: .seconds(30), "ClickHouse takes the old password again") {
            (try? await Self.count(server, "SELECT 1")) == 1
        }
        let both = Manifest(messagesPublished: first.messagesPublished + second.messagesPublished, entries: first.entries + second.entries)
        let report = try await harness.verifyWhenComplete(both)
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
        await server.stop()
    }

    @Test("a two-shard cluster: the shipped DDL, writes through the Distributed table, every reading read back; a shard down holds acks back",
          .enabled(if: ZooKeeperServer.unavailableReason == nil, "zookeeper is not installed"))
    func shardedCluster() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-clickhouse")
        defer { dir.remove() }
        // The shipped shard tables are replicated, so even one replica per shard needs ZooKeeper.
        let cluster = try await ClickHouseCluster(directory: dir.file("cluster"), shards: 2, replicas: 1)
        try await Self.applyClusterDDL(cluster)
        let servers = cluster.servers

        let harness = try await ProcessHarness(gatewayID: "gw-ch-cluster", aggregatorSettings: Self.fast, sinkURL: servers[0].url())
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(2000, rate: 500).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")

        var perShard: [Int] = []
        for server in servers { perShard.append(try await Self.count(server, "SELECT count() FROM tributary.readings_local")) }
        #expect(perShard.allSatisfy { $0 > 0 } && perShard.reduce(0, +) == manifest.entries.count,
                "the readings were spread over both shards: \(perShard)")
        #expect(try await Self.count(servers[0], "SELECT engine = 'Distributed' FROM system.tables WHERE database = 'tributary' AND name = 'readings'") == 1)

        // A shard down: inserts through the Distributed table fail (they are synchronous), so
        // nothing is acknowledged until it is back; then everything arrives once.
        await servers[1].stop()
        let synced = try #require(try await harness.gateway()).readingsSynced
        let second = try await harness.publish(300, rate: 300).value
        try await eventually("the aggregator reports the failing shard") {
            try await harness.fleet().admission.consecutiveSinkFailures > 0
        }
        // The entry node still answers SELECT 1, but the inserts fail: not ready, for a balancer.
        let readyz = try await OperatorTests.get("http://127.0.0.1:\(harness.httpPort)/readyz")
        #expect(readyz.status == 503 && readyz.body.contains("the last sink writes failed"), "\(readyz)")
        try await Task.sleep(for: .seconds(2))
        #expect(try #require(try await harness.gateway()).readingsSynced == synced, "nothing acknowledged while a shard is down")
        try await servers[1].start()
        let both = Manifest(messagesPublished: manifest.messagesPublished + second.messagesPublished, entries: manifest.entries + second.entries)
        let after = try await harness.verifyWhenComplete(both)
        #expect(after.passed, "\(after)")
        await harness.stop(agent, aggregator)
        await cluster.stop()
    }

    @Test("TLS: clickhouse+https with the CA in clickhouse.ca_file works; without it the aggregator exits 1 naming TLS")
    func tls() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-clickhouse")
        defer { dir.remove() }
        let pki = try await TestPKI(in: dir)
        let serverFiles = try await pki.server()
        let server = try await ClickHouseServer(directory: dir.file("clickhouse"), tls: (serverFiles.certificate, serverFiles.key))
        let url = server.url(secure: true)

        let (exitCode, log) = try await Self.runAggregator(in: dir, sink: url)
        #expect(exitCode == 1 && log.contains("TLS with ClickHouse") && log.contains("CERTIFICATE_VERIFY_FAILED"), "\(log)")

        let harness = try await ProcessHarness(gatewayID: "gw-ch-tls", aggregatorSettings: Self.fast,
                                               aggregatorConfig: ["clickhouse:", "  ca_file: \(pki.caFile)"],
                                               sinkURL: url, verifySinkURL: server.url())
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(500, rate: 500).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        #expect(try await Verifier.verify(manifest, sink: url, caFile: pki.caFile).passed, "verify reads over TLS too")
        await harness.stop(agent, aggregator)
        await server.stop()
    }

    /// Applies the shipped cluster DDL as an operator would: `cluster/shard.sql` on every node,
    /// then `cluster/distributed.sql` on every node (so any of them can take an aggregator).
    static func applyClusterDDL(_ cluster: ClickHouseCluster) async throws {
        let shardDDL = try String(contentsOfFile: deployFile("cluster/shard.sql"), encoding: .utf8)
        let distributedDDL = try String(contentsOfFile: deployFile("cluster/distributed.sql"), encoding: .utf8)
        for server in cluster.servers {
            let client = client(server)
            for statement in ClickHouseSchema.statements(inFile: shardDDL) { try await client.execute(statement) }
            await client.shutdown()
        }
        for server in cluster.servers {
            let client = client(server)
            for statement in ClickHouseSchema.statements(inFile: distributedDDL) { try await client.execute(statement) }
            await client.shutdown()
        }
    }

    /// A file under `deploy/clickhouse/` of this checkout.
    static func deployFile(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/clickhouse/" + name).path
    }
}
