import Foundation
import Testing
import TributaryAdminAPI
import TributaryCore
import TributaryCtl
import TributarySimulator
import TributaryTesting

/// Tiers with the real executables: gateways' agents -> city relays -> the province, each an
/// aggregator process on loopback. Every test ends with the exact conservation check at the
/// province (and at a relay's own sink where it keeps one).
///
/// The layout: `ProcessHarness` brings a broker, an agent and the province's aggregator; made
/// `proxied`, its agent sends to `agentTargetPort`, where a relay listens instead of a proxy.
@Suite("tiers", .serialized)
struct TierTests {
    /// A relay: an aggregator with an upstream, its own config and data under the harness's dir.
    struct Relay {
        let name: String
        let port: Int
        let dir: String
        let upstreamPort: Int
        let keepsCopy: Bool
        var sinkURL: String { "sqlite:" + dir + "/sink.sqlite" }
        var log: String { (try? String(contentsOfFile: dir + ".log", encoding: .utf8)) ?? "" }

        init(_ name: String, in harness: ProcessHarness, port: Int, upstreamPort: Int, keepsCopy: Bool, extra: [String] = []) throws {
            self.name = name
            self.port = port
            self.upstreamPort = upstreamPort
            self.keepsCopy = keepsCopy
            dir = harness.dir.file(name)
            try """
                listen: 127.0.0.1:\(port)
                data_dir: \(dir)
                relay_id: \(name)
                sink: \(keepsCopy ? "sqlite:" + dir + "/sink.sqlite" : "none")
                upstream:
                  url: http://127.0.0.1:\(upstreamPort)
                  retry_max_ms: 500
                \(extra.map { "  " + $0 }.joined(separator: "\n"))
                """.write(toFile: dir + ".yaml", atomically: true, encoding: .utf8)
        }

        func start() async throws -> ChildProcess {
            let process = try ChildProcess(executable: try ProcessHarness.executable("tributary-aggregator"),
                                           arguments: ["--config", dir + ".yaml"], logFile: dir + ".log")
            try await FreePort.waitUntilListening(port)
            return process
        }

        /// One figure from the relay's `/metrics`.
        func metric(_ name: String) async throws -> Double {
            let token = try String(contentsOfFile: dir + "/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let text = try await OperatorTests.get("http://127.0.0.1:\(port)/metrics", token: token).body
            for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
                return Double(line.split(separator: " ")[1]) ?? .nan
            }
            throw TestingError("no \(name) in the relay's metrics")
        }
    }

    static let fast = ["batch_max_age_ms: 50", "retry_initial_ms: 20", "retry_max_ms: 300"]

    @Test("agents -> two city relays (one keeping a copy) -> province: exact at the province and at the relay's sink, with the relay path shown")
    func threeTiers() async throws {
        // Stale after 8 s at the province, heartbeats every second at the agents: an idle
        // gateway behind a relay stays online there only if the relay passes heartbeats on.
        let province = try await ProcessHarness(gatewayID: "gw-city-a", aggregatorSettings: Self.fast + ["heartbeat_seconds: 1"],
                                                aggregatorConfig: ["stale_after_seconds: 8"], proxied: true)
        let second = try await ProcessHarness(gatewayID: "gw-city-b", aggregatorSettings: Self.fast + ["heartbeat_seconds: 1"], proxied: true)
        defer { province.dir.remove(); second.dir.remove() }
        let cityA = try Relay("city-a", in: province, port: province.agentTargetPort, upstreamPort: province.httpPort, keepsCopy: true)
        let cityB = try Relay("city-b", in: second, port: second.agentTargetPort, upstreamPort: province.httpPort, keepsCopy: false)
        let top = try await province.startAggregator()
        let relayA = try await cityA.start(), relayB = try await cityB.start()
        let agentA = try await province.startAgent(), agentB = try await second.startAgent()
        async let publishedA = province.publish(1500, rate: 1000).value
        async let publishedB = second.publish(1500, rate: 1000).value
        let (manifestA, manifestB) = try await (publishedA, publishedB)
        let reportA = try await province.verifyWhenComplete(manifestA)
        #expect(reportA.passed, "gateway behind city-a, at the province: \(reportA)")
        let reportB = try await Self.verifyWhenComplete(manifestB, sink: province.sink)
        #expect(reportB.passed, "gateway behind city-b, at the province: \(reportB)")
        let copy = try await Self.verifyWhenComplete(manifestA, sink: cityA.sinkURL)
        #expect(copy.passed, "city-a's own copy: \(copy)")
        let fleet = try await province.fleet()
        #expect(fleet.gateways.first { $0.gatewayID == "gw-city-a" }?.via == ["city-a"])
        #expect(fleet.gateways.first { $0.gatewayID == "gw-city-b" }?.via == ["city-b"])
        #expect(FleetRendering.gatewaysTable(fleet).contains("VIA"))
        try await eventually("both spools drained") {
            let a = try await cityA.metric("tributary_relay_spool_batches"), b = try await cityB.metric("tributary_relay_spool_batches")
            return a == 0 && b == 0
        }
        #expect(try await cityA.metric("tributary_relay_forwarded_readings_total") == Double(manifestA.entries.count))
        // The relays report themselves to the province: `tributaryctl relays` there.
        var relays: [GatewayView] = []
        try await eventually("both relays reported a drained spool to the province") {
            relays = try await province.fleet().gateways.filter { $0.relay != nil }
            return relays.count == 2 && relays.allSatisfy { $0.relay!.spoolBatches == 0 && $0.relay!.upstreamUp }
                && relays.first { $0.gatewayID == "city-a" }?.relay?.forwardedReadingsTotal == UInt64(manifestA.entries.count)
        }
        #expect(relays.first { $0.gatewayID == "city-b" }?.relay?.forwardedReadingsTotal == UInt64(manifestB.entries.count))
        let view = try await province.fleet()
        let relaysText = FleetRendering.relaysTable(view)
        #expect(relaysText.contains("RELAY") && relaysText.contains("city-a") && relaysText.contains("city-b"), "\(relaysText)")
        let gatewaysText = FleetRendering.gatewaysTable(view)
        #expect(!gatewaysText.split(separator: "\n").contains { $0.hasPrefix("city-") } && gatewaysText.contains("gw-city-a"), "relays are not listed as gateways: \(gatewaysText)")
        #expect(FleetTotals(view).gateways == 2 && FleetTotals(view).relays == 2)
        #expect(FleetCheck(maxLagMs: 60_000).evaluate(view).code == .ok, "\(FleetCheck(maxLagMs: 60_000).evaluate(view).lines)")
        // Idle past stale_after_seconds: the gateways' heartbeats and the relays' reports keep
        // every one of them online at the province.
        try await Task.sleep(for: .seconds(12))
        let idle = try await province.fleet()
        #expect(idle.gateways.count == 4 && idle.gateways.allSatisfy { !$0.stale }, "\(idle.gateways.map { ($0.gatewayID, $0.stale) })")
        await province.stop(agentA, relayA, top)
        await second.stop(agentB, relayB)
    }

    @Test("faults between the tiers: relay SIGKILLed three times, the province down 20 s while the relay spools, half the upstream's acks lost: exact at the province")
    func relayFaults() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-relay-faults", aggregatorSettings: Self.fast, proxied: true)
        defer { harness.dir.remove() }
        // The relay reaches the province through a fault proxy that cuts half the answers.
        let proxyPort = try FreePort.allocate()
        let city = try Relay("city", in: harness, port: harness.agentTargetPort, upstreamPort: proxyPort, keepsCopy: true)
        var top = try await harness.startAggregator()
        let proxy = try await harness.startProxy(listen: proxyPort, target: harness.httpPort, ["--drop-responses", "0.5"])
        var relay = try await city.start()
        let agent = try await harness.startAgent()
        let published = try harness.publish(6000, rate: 1000)
        for _ in 0..<3 {
            try await Task.sleep(for: .milliseconds(700))
            await relay.stop(signal: SIGKILL)
            relay = try await city.start()
        }
        // The province goes away; the relay keeps taking batches into its spool.
        await top.stop(signal: SIGKILL)
        try await eventually("the relay spools while the province is down") { try await city.metric("tributary_relay_spool_batches") > 0 }
        try await Task.sleep(for: .seconds(20))
        top = try await harness.startAggregator()
        let manifest = try await published.value
        let report = try await harness.verifyWhenComplete(manifest, timeout: .seconds(120))
        #expect(report.passed, "at the province: \(report)")
        let copy = try await Self.verifyWhenComplete(manifest, sink: city.sinkURL)
        #expect(copy.passed, "the relay's own copy: \(copy)")
        #expect(try await city.metric("tributary_relay_upstream_requests_total{outcome=\"duplicate\"}") > 0,
                "answers the proxy cut were resent and answered duplicate")
        let chain = try #require(try await harness.gateway()?.chain)
        #expect(chain.intact, "\(chain)")
        await harness.stop(agent, relay, proxy, top)
    }

    @Test("a loop (relay A's upstream is B and B's is A) is refused with a clear reason and no traffic storm; nothing is lost: it waits set aside, and goes on once the loop is fixed")
    func loopRefused() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-loop", aggregatorSettings: Self.fast, proxied: true)
        defer { harness.dir.remove() }
        let portB = try FreePort.allocate()
        let a = try Relay("city-a", in: harness, port: harness.agentTargetPort, upstreamPort: portB, keepsCopy: false)
        let b = try Relay("city-b", in: harness, port: portB, upstreamPort: harness.agentTargetPort, keepsCopy: false)
        let relayA = try await a.start(), relayB = try await b.start()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(200, rate: 400).value
        // A took each batch and forwarded it to B; B's forward back to A names A: refused.
        try await eventually("B set aside what came back round") {
            let setAside = try await b.metric("tributary_relay_spool_set_aside_batches"), waiting = try await a.metric("tributary_relay_spool_batches")
            return setAside > 0 && waiting == 0
        }
        let setAside = try await b.metric("tributary_relay_spool_set_aside_batches")
        let readingsHeld = try await b.metric("tributary_relay_forwarded_readings_total")
        #expect(readingsHeld == 0, "B forwarded nothing")
        // No storm: each batch went round once and stopped. (Heartbeats passed on go round
        // too, and are refused the same way: at most one per gateway per 5 s report round.)
        let refusedBefore = try await b.metric("tributary_relay_upstream_requests_total{outcome=\"rejected\"}")
        #expect(refusedBefore >= setAside, "one refused request per batch")
        try await Task.sleep(for: .seconds(3))
        #expect(try await b.metric("tributary_relay_spool_set_aside_batches") == setAside)
        let refusedAfter = try await b.metric("tributary_relay_upstream_requests_total{outcome=\"rejected\"}")
        #expect(refusedAfter - refusedBefore <= 4, "no traffic storm: \(refusedBefore) then \(refusedAfter) refused")
        #expect(b.log.contains("loop: this request already passed through relay city-a"))
        #expect(try await a.metric("tributary_relay_forwarded_readings_total") == Double(manifest.entries.count))
        // The operator fixes B's upstream and restarts it: what waited set aside is forwarded,
        // exactly once. (The gateway was answered accepted long ago: custody ends only upstream.)
        await relayB.stop(signal: SIGTERM)
        let fixed = try Relay("city-b", in: harness, port: portB, upstreamPort: harness.httpPort, keepsCopy: false)
        let top = try await harness.startAggregator()
        let restarted = try await fixed.start()
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "at the province after the fix: \(report)")
        #expect(fixed.log.contains("batches the upstream refused last run are tried again"))
        await harness.stop(agent, relayA, restarted, top)
    }

    @Test("a relay's spool at its quota while the province is down: the gateway is answered 503 and keeps the backlog; all of it arrives once, after")
    func spoolQuota() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-spool-quota", aggregatorSettings: Self.fast, proxied: true)
        defer { harness.dir.remove() }
        let city = try Relay("city", in: harness, port: harness.agentTargetPort, upstreamPort: harness.httpPort, keepsCopy: false,
                             extra: ["max_spool_bytes: 64k"])
        let relay = try await city.start()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(4000, rate: 2000).value
        try await eventually("the spool reached its quota and the gateway was told to wait") {
            harness.agentLog.contains("spool is full") || harness.agentLog.contains("max_spool_bytes")
        }
        let held = try await city.metric("tributary_relay_spool_bytes")
        #expect(held <= 64 * 1024, "the spool stays within its quota: \(held) bytes")
        let top = try await harness.startAggregator()
        let report = try await harness.verifyWhenComplete(manifest, timeout: .seconds(120))
        #expect(report.passed, "at the province: \(report)")
        await harness.stop(agent, relay, top)
    }

    @Test("a gateway re-pointed mid-stream from one relay to the other, then straight to the province: no duplicate, nothing missing")
    func gatewayRepointed() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-moved", aggregatorSettings: Self.fast, proxied: true)
        defer { harness.dir.remove() }
        let portB = try FreePort.allocate()
        let a = try Relay("city-a", in: harness, port: harness.agentTargetPort, upstreamPort: harness.httpPort, keepsCopy: true)
        let b = try Relay("city-b", in: harness, port: portB, upstreamPort: harness.httpPort, keepsCopy: false)
        let top = try await harness.startAggregator()
        let relayA = try await a.start(), relayB = try await b.start()
        var agent = try await harness.startAgent()
        let published = try harness.publish(6000, rate: 1500)
        let config = harness.dir.file("agent.yaml")
        for target in [portB, harness.httpPort] {
            try await Task.sleep(for: .seconds(1))
            let text = try String(contentsOfFile: config, encoding: .utf8)
            let moved = text.replacingOccurrences(of: #"url: http://127\.0\.0\.1:\d+"#, with: "url: http://127.0.0.1:\(target)", options: .regularExpression)
            try moved.write(toFile: config, atomically: true, encoding: .utf8)
            // A restart, as an operator's reload: batches sent and not yet acknowledged are
            // resent to the new place, which the province answers duplicate when they came
            // through already. (Not SIGKILL: that loses what the agent took from the broker and
            // had not committed, the agent's documented window, nothing to do with relays.)
            await agent.stop(signal: SIGTERM)
            agent = try await harness.startAgent()
        }
        let manifest = try await published.value
        let report = try await harness.verifyWhenComplete(manifest, timeout: .seconds(120))
        #expect(report.passed, "at the province: \(report)")
        #expect(try await harness.gateway()?.chain?.intact == true)
        await harness.stop(agent, relayA, relayB, top)
    }

    /// Waits until `sink` holds every reading of `manifest` and stays put, then the report.
    static func verifyWhenComplete(_ manifest: Manifest, sink: String, timeout: Duration = .seconds(60)) async throws -> Verifier.Report {
        try await eventually(timeout: timeout, "the sink holds every reading") {
            try await Verifier.verify(manifest, sink: sink).found >= manifest.entries.count
        }
        try await Task.sleep(for: .seconds(1))
        return try await Verifier.verify(manifest, sink: sink)
    }
}
