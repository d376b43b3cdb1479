import Foundation
import Testing
import TributaryAdminAPI
import TributaryCore
import TributaryCtl
import TributarySimulator
import TributarySync
import TributaryTesting

/// No single point of failure, with the real executables: two aggregators writing to one
/// ClickHouse, agents listing both. Every test ends with the exact conservation check (after
/// `FINAL`) and the fleet view joined from both aggregators, as `tributaryctl --aggregator A
/// --aggregator B` reads it.
@Suite("high availability", .serialized, .enabled(if: ClickHouseServer.unavailableReason == nil, "clickhouse-server is not installed"))
struct HighAvailabilityTests {
    static let fast = ["batch_max_age_ms: 50", "retry_initial_ms: 20", "retry_max_ms: 300", "request_timeout_seconds: 5", "failback_seconds: 2"]

    /// A gateway id whose rendezvous order puts `preferred` first among `urls`.
    static func gatewayID(preferring preferred: String, of urls: [String], prefix: String) -> String {
        (0..<1000).lazy.map { "\(prefix)-\($0)" }.first { AggregatorTargets.rendezvousOrder(urls, senderID: $0).first == preferred }!
    }

    @Test("two aggregators on a 2 x 2 replicated cluster with insert_quorum 2: the preferred one SIGKILLed mid-stream, every gateway fails over and comes back; exact after FINAL, one row each, chains intact across both",
          .enabled(if: ClickHouseCluster.unavailableReason == nil, "zookeeper is not installed"))
    func failoverAndBack() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-ha")
        defer { dir.remove() }
        // The shipped cluster: ZooKeeper, 2 shards x 2 replicas, the DDL of deploy/clickhouse/cluster/.
        // A enters it by shard 1's first replica, B by shard 2's: each a node with the Distributed tables.
        let cluster = try await ClickHouseCluster(directory: dir.file("cluster"), shards: 2, replicas: 2)
        try await ClickHouseTests.applyClusterDDL(cluster)
        let sink = cluster.shards[0][0].url()
        let quorum = ["clickhouse:", "  insert_quorum: 2", "  insert_quorum_timeout_seconds: 3"]
        // Two gateways, each with its broker and agent; both prefer aggregator A (the first
        // harness's), and list the URLs B first: the order written does not matter.
        let portA = try FreePort.allocate(), portB = try FreePort.allocate()
        let urlA = "http://127.0.0.1:\(portA)", urlB = "http://127.0.0.1:\(portB)"
        let ids = [Self.gatewayID(preferring: urlA, of: [urlA, urlB], prefix: "gw-ha-a"),
                   Self.gatewayID(preferring: urlA, of: [urlA, urlB], prefix: "gw-ha-b")]
        var harnesses: [ProcessHarness] = []
        for id in ids {
            harnesses.append(try await ProcessHarness(gatewayID: id, aggregatorSettings: Self.fast, sinkURL: sink,
                                                      aggregatorURLs: [urlB, urlA]))
        }
        defer { harnesses.forEach { $0.dir.remove() } }
        let a = try AggregatorProcess(port: portA, dir: dir.file("aggregator-a"), sink: sink, extra: quorum)
        let b = try AggregatorProcess(port: portB, dir: dir.file("aggregator-b"), sink: cluster.shards[1][0].url(), extra: quorum)
        var processA = try await a.start()
        let processB = try await b.start()
        var agents: [ChildProcess] = []
        for harness in harnesses { agents.append(try await harness.startAgent()) }

        // 3,000 messages per gateway over about 10 s; A is killed after about 3.
        let publishing = try harnesses.map { try $0.publish(3000, rate: 300) }
        try await eventually("A takes batches from both gateways") {
            let view = try await a.client().fleet().view
            return ids.allSatisfy { id in (view.gateways.first { $0.gatewayID == id }?.readingsSynced ?? 0) > 0 }
        }
        try await Task.sleep(for: .seconds(2))
        await processA.stop(signal: SIGKILL)
        let killed = ContinuousClock.now
        // Failover time: from the kill to each gateway's first batch accepted at B.
        var failoverSeconds: [Double] = []
        for id in ids {
            try await eventually(timeout: .seconds(30), "\(id) delivers to B") {
                (try await b.client().fleet().view.gateways.first { $0.gatewayID == id }?.readingsSynced ?? 0) > 0
            }
            failoverSeconds.append((ContinuousClock.now - killed).inSeconds)
        }
        print("failover: first batch accepted at B \(failoverSeconds.map { String(format: "%.2f s", $0) }.joined(separator: ", ")) after A was killed (polled every 100 ms)")
        try await Task.sleep(for: .seconds(2))
        processA = try await a.start()
        // Back on A once it answers (failback_seconds: 2), with more to send from there.
        try await eventually(timeout: .seconds(30), "every gateway reports A again") {
            let view = try await a.client().fleet().view
            return ids.allSatisfy { id in view.gateways.first { $0.gatewayID == id }?.aggregator == urlA }
        }
        var manifests: [Manifest] = []
        for task in publishing { manifests.append(try await task.value) }
        let after = try await harnesses.asyncMap { try await $0.publish(500, rate: 250).value }
        for (index, harness) in harnesses.enumerated() {
            let both = Manifest(messagesPublished: manifests[index].messagesPublished + after[index].messagesPublished,
                                entries: manifests[index].entries + after[index].entries)
            let report = try await harness.verifyWhenComplete(both)
            #expect(report.passed, "\(harness.gatewayID): \(report)")
            manifests[index] = both
        }

        // The joined view: each gateway once, its totals the sum over A and B, its chain
        // whole across both, on A again after one failover.
        let sources = FleetSources([try a.client(), try b.client()])
        // The gateway's own count of acknowledged readings is exact whichever aggregator took
        // which batch. Each aggregator's SYNCED counts what it wrote: a batch A wrote in the
        // instant before it was killed, before recording it, is counted by neither (its resend
        // is answered duplicate at B), and one resent to B after a timeout while A still wrote
        // it may be counted by both (docs/high-availability.md, Not built).
        try await eventually("the joined view settles") {
            let view = try await sources.fleet().view
            return ids.enumerated().allSatisfy { index, id in
                view.gateways.first { $0.gatewayID == id }.map {
                    $0.chain?.waiting == 0 && $0.acknowledgedTotal == UInt64(manifests[index].entries.count)
                } ?? false
            }
        }
        let joined = try await sources.fleet().view
        #expect(joined.gateways.count == ids.count, "one row per gateway: \(joined.gateways.map(\.gatewayID))")
        #expect(joined.unanswered == nil && joined.mergedFrom?.count == 2)
        for id in ids {
            let g = try #require(joined.gateways.first { $0.gatewayID == id })
            #expect(g.aggregator == urlA && (g.failovers ?? 0) >= 1, "\(id): on \(g.aggregator ?? "?") after \(g.failovers ?? 0) failovers")
            let chain = try #require(g.chain)
            #expect(chain.intact && chain.waiting == 0 && chain.gaps == 0 && chain.startSequence == 1, "\(id): \(chain)")
            #expect((chain.segments ?? []).count >= 2, "\(id): runs at A and at B: \(chain.segments ?? [])")
        }
        #expect(FleetCheck(maxLagMs: 60_000).evaluate(joined).code == .ok, "\(FleetCheck(maxLagMs: 60_000).evaluate(joined).lines)")
        let table = FleetRendering.gatewaysTable(joined)
        #expect(table.contains("AGGREGATOR") && table.contains("FAILOVERS"), "\(table)")
        // Alone, neither aggregator saw every batch.
        let viewA = try await a.client().fleet().view
        #expect(ids.allSatisfy { id in (viewA.gateways.first { $0.gatewayID == id }?.readingsSynced ?? 0) < UInt64(manifests[ids.firstIndex(of: id)!].entries.count) })
        for (harness, agent) in zip(harnesses, agents) { await harness.stop(agent) }
        await processA.stop(signal: SIGTERM)
        await processB.stop(signal: SIGTERM)
        // On a throw the servers are SIGKILLed when released (ChildProcess's deinit).
        await cluster.stop()
    }

    @Test("acks lost on the way from one aggregator: the resend to the other is answered duplicate; exact after FINAL")
    func lostAcksAcrossAggregators() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-ha")
        defer { dir.remove() }
        let clickhouse = try await ClickHouseServer(directory: dir.file("clickhouse"))
        let sink = clickhouse.url()
        // The gateway prefers A, reached through a proxy that cuts 60% of the replies: the
        // batch was written, the ack lost, and the resend goes to B.
        let proxyPort = try FreePort.allocate(), portA = try FreePort.allocate(), portB = try FreePort.allocate()
        let proxied = "http://127.0.0.1:\(proxyPort)", urlB = "http://127.0.0.1:\(portB)"
        let id = Self.gatewayID(preferring: proxied, of: [proxied, urlB], prefix: "gw-ha-acks")
        let harness = try await ProcessHarness(gatewayID: id, aggregatorSettings: Self.fast, sinkURL: sink, aggregatorURLs: [proxied, urlB])
        defer { harness.dir.remove() }
        let a = try AggregatorProcess(port: portA, dir: dir.file("aggregator-a"), sink: sink)
        let b = try AggregatorProcess(port: portB, dir: dir.file("aggregator-b"), sink: sink)
        let processA = try await a.start(), processB = try await b.start()
        try "0s drop-responses 0.6\n8s normal\n".write(toFile: harness.dir.file("faults.txt"), atomically: true, encoding: .utf8)
        let proxy = try await harness.startProxy(listen: proxyPort, target: portA, ["--script", harness.dir.file("faults.txt"), "--seed", "11"])
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(2000, rate: 500).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        let atB = try await b.client().fleet().view.gateways.first { $0.gatewayID == id }
        #expect((atB?.duplicateBatches ?? 0) > 0, "batches A wrote, whose acks were lost, were answered duplicate by B: \(String(describing: atB))")
        let joined = try await FleetSources([try a.client(), try b.client()]).fleet().view
        let g = try #require(joined.gateways.first { $0.gatewayID == id })
        try await eventually("the gateway reports every reading acknowledged") {
            try await FleetSources([try a.client(), try b.client()]).fleet().view.gateways.first { $0.gatewayID == id }?.acknowledgedTotal
                == UInt64(manifest.entries.count)
        }
        // Nothing was killed, so every batch was counted by an aggregator that wrote it (by two
        // only if a resend overtook a slow original: a request timeout, not a lost ack).
        #expect(g.readingsSynced >= UInt64(manifest.entries.count), "\(g.readingsSynced) of \(manifest.entries.count)")
        #expect(g.chain?.intact == true && g.chain?.gaps == 0, "\(String(describing: g.chain))")
        await harness.stop(agent)
        await proxy.stop(signal: SIGTERM)
        await processA.stop(signal: SIGTERM)
        await processB.stop(signal: SIGTERM)
        await clickhouse.stop()
    }

    @Test("a relay lists the province's two aggregators: the one it prefers SIGKILLed, it fails over, exact after FINAL")
    func relayFailsOver() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-ha")
        defer { dir.remove() }
        let clickhouse = try await ClickHouseServer(directory: dir.file("clickhouse"))
        let sink = clickhouse.url()
        let portA = try FreePort.allocate(), portB = try FreePort.allocate()
        let urlA = "http://127.0.0.1:\(portA)", urlB = "http://127.0.0.1:\(portB)"
        let relayID = Self.gatewayID(preferring: urlA, of: [urlA, urlB], prefix: "city")
        // The gateway's agent sends to the relay (the harness's proxied port), the relay to A or B.
        let harness = try await ProcessHarness(gatewayID: "gw-ha-relayed", aggregatorSettings: Self.fast, proxied: true)
        defer { harness.dir.remove() }
        let relayDir = harness.dir.file("relay")
        try """
            listen: 127.0.0.1:\(harness.agentTargetPort)
            data_dir: \(relayDir)
            relay_id: \(relayID)
            sink: none
            upstream:
              urls: [\(urlB), \(urlA)]
              retry_max_ms: 500
              request_timeout_seconds: 5
              failback_seconds: 2
            """.write(toFile: relayDir + ".yaml", atomically: true, encoding: .utf8)
        let a = try AggregatorProcess(port: portA, dir: dir.file("aggregator-a"), sink: sink, extra: ["trusted_relays: [\(relayID)]"])
        let b = try AggregatorProcess(port: portB, dir: dir.file("aggregator-b"), sink: sink, extra: ["trusted_relays: [\(relayID)]"])
        let processA = try await a.start(), processB = try await b.start()
        let relay = try ChildProcess(executable: try ProcessHarness.executable("tributary-aggregator"),
                                     arguments: ["--config", relayDir + ".yaml"], logFile: relayDir + ".log")
        try await FreePort.waitUntilListening(harness.agentTargetPort)
        let agent = try await harness.startAgent()
        let publishing = try harness.publish(3000, rate: 300)
        try await eventually("A takes the relay's batches") {
            (try await a.client().fleet().view.gateways.first { $0.gatewayID == "gw-ha-relayed" }?.readingsSynced ?? 0) > 0
        }
        await processA.stop(signal: SIGKILL)
        let manifest = try await publishing.value
        let report = try await TierTests.verifyWhenComplete(manifest, sink: sink)
        #expect(report.passed, "\(report)")
        try await eventually("the relay reports its failover to B") {
            let view = try await b.client().fleet().view.gateways.first { $0.gatewayID == relayID }
            return view?.aggregator == urlB && (view?.failovers ?? 0) >= 1
        }
        let relayLog = (try? String(contentsOfFile: relayDir + ".log", encoding: .utf8)) ?? ""
        #expect(relayLog.contains("failing over to another upstream"), "\(ProcessHarness.tail(relayDir + ".log"))")
        await harness.stop(agent, relay)
        await processB.stop(signal: SIGTERM)
        await clickhouse.stop()
    }

    @Test("/readyz: 200 while the sink takes writes, 503 while it cannot (ClickHouse down), 200 again after")
    func readiness() async throws {
        let dir = try TemporaryDirectory(prefix: "tributary-ha")
        defer { dir.remove() }
        let clickhouse = try await ClickHouseServer(directory: dir.file("clickhouse"))
        let a = try AggregatorProcess(port: try FreePort.allocate(), dir: dir.file("aggregator"), sink: clickhouse.url())
        let process = try await a.start()
        func ready() async throws -> UInt { try await OperatorTests.get(a.url + "/readyz", token: nil).status }
        try await eventually("ready") { try await ready() == 200 }
        await clickhouse.kill()
        try await eventually("not ready while ClickHouse is down") { try await ready() == 503 }
        try await clickhouse.start()
        try await eventually(timeout: .seconds(60), "ready again") { try await ready() == 200 }
        await process.stop(signal: SIGTERM)
        await clickhouse.stop()
    }
}

/// An aggregator process of its own: port, data directory and config, a given sink.
struct AggregatorProcess {
    let port: Int
    let dir: String
    var url: String { "http://127.0.0.1:\(port)" }

    init(port: Int, dir: String, sink: String, extra: [String] = []) throws {
        self.port = port
        self.dir = dir
        try (["listen: 127.0.0.1:\(port)", "data_dir: \(dir)", "sink: \(sink)"] + extra).joined(separator: "\n")
            .write(toFile: dir + ".yaml", atomically: true, encoding: .utf8)
    }

    func start() async throws -> ChildProcess {
        let process = try ChildProcess(executable: try ProcessHarness.executable("tributary-aggregator"),
                                       arguments: ["--config", dir + ".yaml"], logFile: dir + ".log")
        do {
            try await FreePort.waitUntilListening(port)
        } catch {
            throw TestingError("\(error); aggregator log:\n\(ProcessHarness.tail(dir + ".log"))")
        }
        return process
    }

    var log: String { (try? String(contentsOfFile: dir + ".log", encoding: .utf8)) ?? "" }

    func client() throws -> FleetClient {
        FleetClient(aggregator: url, token: try String(contentsOfFile: dir + "/admin-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
