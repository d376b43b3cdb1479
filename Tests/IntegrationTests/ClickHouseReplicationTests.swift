import Foundation
import Testing
import TributaryAdminAPI
import TributaryClickHouse
import TributaryCore
import TributarySimulator
import TributaryTesting

/// The ClickHouse sink on the shipped replicated cluster: one ZooKeeper and 2 shards x 2
/// replicas of clickhouse-server (Debian's 18.16 in CI), with the real aggregator, agent and
/// broker, writing through the Distributed table. Conservation is read through `FINAL`, as
/// `tributary-sim verify` does.
@Suite("ClickHouse replicated cluster", .serialized,
       .enabled(if: ClickHouseCluster.unavailableReason == nil, "clickhouse-server or zookeeper is not installed"))
struct ClickHouseReplicationTests {
    /// The aggregator's `clickhouse:` section: every insert held until both replicas of each
    /// shard have it. The quorum wait is short because the cluster's ZooKeeper sessions are
    /// (4 s): a replica just killed still counts as alive until its session ends.
    static let quorumConfig = ["clickhouse:", "  insert_quorum: 2", "  insert_quorum_timeout_seconds: 3", "  timeout_seconds: 10"]

    /// A started cluster with the shipped DDL applied.
    static func cluster(in dir: TemporaryDirectory) async throws -> ClickHouseCluster {
        let cluster = try await ClickHouseCluster(directory: dir.file("cluster"), shards: 2, replicas: 2)
        try await ClickHouseTests.applyClusterDDL(cluster)
        return cluster
    }

    /// `count()` of a local table under FINAL on each replica, by shard then replica.
    static func counts(_ cluster: ClickHouseCluster, _ table: String) async throws -> [[Int]] {
        var counts: [[Int]] = []
        for shard in cluster.shards {
            var replicas: [Int] = []
            for server in shard { replicas.append(try await ClickHouseTests.count(server, "SELECT count() FROM tributary.\(table) FINAL")) }
            counts.append(replicas)
        }
        return counts
    }

    @Test("2 shards x 2 replicas, insert_quorum 2: one replica of each shard SIGKILLed mid-stream; what was acknowledged is on the survivors, nothing is acknowledged meanwhile, then 0 missing, 0 duplicates, and the restarted replicas catch up")
    func replicaOfEachShardKilled() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-clickhouse-replicas")
        defer { dir.remove() }
        let cluster = try await Self.cluster(in: dir)
        // The aggregator writes through the first replica of shard 1; the second replica of
        // shard 1 and the first of shard 2 die (never both replicas of one shard).
        let entry = cluster.shards[0][0]
        let victims = [cluster.shards[0][1], cluster.shards[1][0]]
        let survivors = [cluster.shards[0][0], cluster.shards[1][1]]
        let harness = try await ProcessHarness(gatewayID: "gw-ch-replicas", aggregatorSettings: ClickHouseTests.fast,
                                               aggregatorConfig: Self.quorumConfig, sinkURL: entry.url(),
                                               directory: try TemporaryDirectory(prefix: "tributary-clickhouse-replicas-run"))
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let publishing = try harness.publish(3000, rate: 600)
        try await eventually("the first batches are acknowledged") { try await harness.gateway()?.readingsSynced ?? 0 > 0 }
        for victim in victims { await victim.kill() }

        // With two replicas and a quorum of two, no shard can take an insert now: 503s.
        try await eventually("the aggregator reports failing inserts") {
            try await harness.fleet().admission.consecutiveSinkFailures >= 3
        }
        let outage = try await harness.fleet()
        #expect(outage.admission.lastSinkError.lowercased().contains("quorum"), "ClickHouse said why: \(outage.admission.lastSinkError)")
        let synced = try #require(outage.gateways.first { $0.gatewayID == harness.gatewayID })
        // Every acknowledged batch was on both replicas of its shards before it was answered, so
        // the survivors alone hold every reading and ledger row acknowledged so far.
        var onSurvivors = (readings: 0, ledger: 0)
        for server in survivors {
            onSurvivors.readings += try await ClickHouseTests.count(server, "SELECT count() FROM tributary.readings_local FINAL")
            onSurvivors.ledger += try await ClickHouseTests.count(server, "SELECT count() FROM tributary.batch_ledger_local FINAL")
        }
        #expect(onSurvivors.readings >= Int(synced.readingsSynced) && onSurvivors.ledger >= Int(synced.batchesSynced),
                "acknowledged: \(synced.readingsSynced) readings in \(synced.batchesSynced) batches; on the survivors: \(onSurvivors)")
        try await Task.sleep(for: .seconds(2))
        #expect(try #require(try await harness.gateway()).readingsSynced == synced.readingsSynced,
                "nothing acknowledged while a shard has one replica")

        for victim in victims { try await victim.start() }
        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest, timeout: .seconds(120))
        #expect(report.passed, "\(report)")
        #expect(try await harness.fleet().admission.consecutiveSinkFailures == 0)

        // The restarted replicas fetch what they missed: each local table holds what its peer holds.
        var last: (readings: [[Int]], ledger: [[Int]]) = ([], [])
        do {
            try await eventually(timeout: .seconds(60), "the restarted replicas catch up") {
                last = (try await Self.counts(cluster, "readings_local"), try await Self.counts(cluster, "batch_ledger_local"))
                return (last.readings + last.ledger).allSatisfy { Set($0).count == 1 }
            }
        } catch {
            Issue.record("\(error): readings \(last.readings), ledger \(last.ledger)")
        }
        #expect(last.readings.map { $0[0] }.reduce(0, +) == manifest.entries.count, "readings per shard and replica: \(last.readings)")
        let gateway = try #require(try await harness.gateway())
        // Every accepted batch has its ledger row. An insert that failed its quorum in time (319)
        // may still have landed on one replica: its resend is then answered duplicate, so the
        // ledger can hold more rows than batches counted accepted, by at most the duplicates.
        let ledgerRows = last.ledger.map { $0[0] }.reduce(0, +)
        #expect(ledgerRows >= Int(gateway.batchesSynced) && ledgerRows <= Int(gateway.batchesSynced + gateway.duplicateBatches),
                "ledger rows per shard and replica: \(last.ledger); batches accepted: \(gateway.batchesSynced), answered duplicate: \(gateway.duplicateBatches)")
        await harness.stop(agent, aggregator)
        await cluster.stop()
    }

    @Test("two aggregators with insert_quorum 2 on one cluster: quorum inserts refuse each other at times (286: the sink waits and tries again, then 503), and each gateway's readings arrive exactly once")
    func concurrentQuorumWriters() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-clickhouse-replicas")
        defer { dir.remove() }
        let cluster = try await Self.cluster(in: dir)
        // Each aggregator (with its own gateway and broker) writes through a different node.
        var harnesses: [ProcessHarness] = []
        for (index, entry) in [cluster.shards[0][0], cluster.shards[1][1]].enumerated() {
            harnesses.append(try await ProcessHarness(gatewayID: "gw-ch-quorum-\(index + 1)", aggregatorSettings: ClickHouseTests.fast,
                                                      aggregatorConfig: Self.quorumConfig, sinkURL: entry.url(),
                                                      directory: try TemporaryDirectory(prefix: "tributary-clickhouse-quorum-\(index + 1)")))
        }
        defer { for harness in harnesses { harness.dir.remove() } }
        var processes: [(ChildProcess, ChildProcess)] = []
        for harness in harnesses { processes.append((try await harness.startAggregator(), try await harness.startAgent())) }
        let publishing = try harnesses.map { try $0.publish(3000, rate: 600) }
        for (harness, publisher) in zip(harnesses, publishing) {
            let manifest = try await publisher.value
            let report = try await harness.verifyWhenComplete(manifest, timeout: .seconds(120))
            #expect(report.passed, "\(harness.gatewayID): \(report)")
        }
        // How often the two refused each other depends on timing: reported, not asserted.
        for harness in harnesses {
            let admission = try await harness.fleet().admission
            print("\(harness.gatewayID): \(admission.sinkFailures) sink failures (503); last: \(admission.lastSinkError)")
        }
        for (harness, (aggregator, agent)) in zip(harnesses, processes) { await harness.stop(agent, aggregator) }
        await cluster.stop()
    }
}
