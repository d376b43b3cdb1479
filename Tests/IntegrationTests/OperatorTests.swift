import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TributaryCore
import TributaryCtl
import TributarySimulator
import TributarySQLite
import TributaryTesting

/// What operators see, from the real executables: the fleet view, tributaryctl, the admin
/// token, `/metrics` and the probes, and `watch` in a real terminal.
@Suite("operator view", .serialized)
struct OperatorTests {
    @Test("a gateway that stops is shown stale after the configured silence; the registry survives a restart")
    func staleGatewayAndDurableRegistry() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-quiet", aggregatorSettings: ["batch_max_age_ms: 200", "heartbeat_seconds: 1"],
                                               aggregatorConfig: ["stale_after_seconds: 3"])
        defer { harness.dir.remove() }
        var aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(300, rate: 300).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        // Idle, the agent keeps the gateway online with heartbeats, longer than the stale limit.
        try await Task.sleep(for: .seconds(4))
        var gateway = try #require(try await harness.gateway())
        #expect(!gateway.stale && gateway.readingsSynced == UInt64(manifest.entries.count) && gateway.backlogReadings == 0)
        let ok = try await Self.ctl(harness, ["check", "--max-stale", "0", "--max-lag", "1m"])
        #expect(ok.code == 0 && ok.output.hasPrefix("OK: 1 gateways, 0 stale"), "\(ok.output)")

        #expect(ProcessHarness.exitCode(await agent.stop(signal: SIGTERM)) == 0)
        // Its last heartbeat is at most a second old: not stale yet, only after 3 s of silence.
        #expect(try await harness.gateway()?.stale == false, "not stale before the configured silence")
        try await eventually(timeout: .seconds(20), "the gateway is shown stale") { try await harness.gateway()?.stale == true }
        let critical = try await Self.ctl(harness, ["check", "--max-stale", "0"])
        #expect(critical.code == 2, "\(critical.output)")
        #expect(critical.output.contains("1 gateways stale (max 0): gw-quiet"), "\(critical.output)")
        let listed = try await Self.ctl(harness, ["gateways", "--stale"])
        #expect(listed.code == 0 && listed.output.contains("gw-quiet") && listed.output.contains("stale"), "\(listed.output)")

        // Restarted, the aggregator still knows the gateway, its totals and its history.
        #expect(ProcessHarness.exitCode(await aggregator.stop(signal: SIGTERM)) == 0)
        aggregator = try await harness.startAggregator()
        gateway = try #require(try await harness.gateway())
        #expect(gateway.stale && gateway.readingsSynced == UInt64(manifest.entries.count))
        let detail = try await harness.fleetClient.gateway("gw-quiet").detail
        #expect(detail.history.contains { $0.kind == .accepted } && detail.history.contains { $0.kind == .heartbeat })
        #expect(detail.history.filter { $0.kind == .accepted }.reduce(0) { $0 + $1.readings } == manifest.entries.count)
        let shown = try await Self.ctl(harness, ["gateway", "gw-quiet"])
        #expect(shown.code == 0 && shown.output.contains("gateway      gw-quiet (stale") && shown.output.contains("accepted"), "\(shown.output)")
        #expect(shown.output.contains("round trip"), "the skew estimate comes from a timed exchange: \(shown.output)")
        await harness.stop(aggregator)
    }

    /// The sink refuses every batch (nothing listens where it points), so the gateway holds all
    /// it received. The fleet view must show exactly that backlog and its oldest reading.
    @Test("backlog and lag in the fleet view match what the agent holds")
    func backlogMatchesTheAgent() async throws {
        let statusPort = try FreePort.allocate()
        let deadSink = try FreePort.allocate()
        let harness = try await ProcessHarness(gatewayID: "gw-held", aggregatorSettings: ["batch_max_age_ms: 200", "batch_max_readings: 100"],
                                               sinkURL: "clickhouse://127.0.0.1:\(deadSink)/tributary")
        defer { harness.dir.remove() }
        try "status_listen: 127.0.0.1:\(statusPort)\n".appendLine(toFile: harness.dir.file("agent.yaml"))
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        try await FreePort.waitUntilListening(statusPort)
        let manifest = try await harness.publish(500, rate: 500).value
        let agentMetrics = "http://127.0.0.1:\(statusPort)/metrics"
        try await eventually(timeout: .seconds(30), "the agent buffered every reading") {
            try await Self.scrape(agentMetrics).value("tributary_agent_readings_ingested_total") == Double(manifest.entries.count)
        }
        let held = try Self.bufferFacts(harness.dir.file("agent/buffer.sqlite"))
        #expect(held.readings == manifest.entries.count)
        try await eventually(timeout: .seconds(60), "the fleet view shows the whole backlog") {
            try await harness.gateway()?.backlogReadings == UInt64(held.readings)
        }
        let gateway = try #require(try await harness.gateway())
        #expect(gateway.oldestUnsentMs == held.oldestReceivedMs, "lag is measured from the oldest reading the agent holds")
        #expect(gateway.readingsSynced == 0)
        let agentSide = try await Self.scrape(agentMetrics)
        #expect(agentSide.value("tributary_agent_backlog_readings") == Double(held.readings))
        #expect((agentSide.value("tributary_agent_requests_total", ["outcome": "unavailable"]) ?? 0) > 0)
        let detail = try await harness.fleetClient.gateway("gw-held").detail
        #expect(detail.history.first?.kind == .refused && detail.history.first?.detail.contains("sink unavailable") == true)

        // The probes: the aggregator is not ready (its sink is down), the agent is.
        #expect(try await Self.get("http://127.0.0.1:\(harness.httpPort)/readyz").status == 503)
        #expect(try await Self.get("http://127.0.0.1:\(harness.httpPort)/healthz").status == 200)
        #expect(try await Self.get("http://127.0.0.1:\(statusPort)/readyz").status == 200)
        let check = try await Self.ctl(harness, ["check", "--max-lag", "1h"])
        #expect(check.code == 2 && check.output.contains("failing"), "a failing sink is critical: \(check.output)")
        await harness.stop(agent, aggregator)
    }

    @Test("the admin API and /metrics refuse a missing or wrong token; the probes need none")
    func adminAPIRequiresTheToken() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-token")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let base = "http://127.0.0.1:\(harness.httpPort)"
        let token = try harness.adminToken
        #expect(token.count == 64)
        for path in ["/v1/fleet", "/v1/gateways/gw-token", "/metrics"] {
            let missing = try await Self.get(base + path)
            #expect(missing.status == 401 && missing.body.contains("operator token"), "\(path): \(missing)")
            #expect(missing.headers.first(name: "WWW-Authenticate")?.hasPrefix("Bearer") == true)
            let wrong = try await Self.get(base + path, token: String(token.reversed()))
            #expect(wrong.status == 401 && wrong.body.contains("wrong"), "\(path): \(wrong)")
        }
        #expect(try await Self.get(base + "/v1/fleet", token: token).status == 200)
        #expect(try await Self.get(base + "/v1/gateways/gw-token", token: token).status == 404)
        #expect(try await Self.get(base + "/healthz").status == 200)
        #expect(try await Self.get(base + "/readyz").status == 200)

        let refused = try await Self.ctl(harness, ["status"], token: nil)
        #expect(refused.code == 1 && refused.output.contains("401") && refused.output.contains("--token"), "\(refused.output)")
        let unknown = try await Self.ctl(harness, ["check"], token: nil)
        #expect(unknown.code == 3 && unknown.output.hasPrefix("UNKNOWN"), "\(unknown.output)")
        let allowed = try await Self.ctl(harness, ["status", "--json"])
        #expect(allowed.code == 0 && allowed.output.contains("\"gateways\""), "\(allowed.output)")
        await harness.stop(aggregator)
    }

    @Test("/metrics of aggregator and agent parse as Prometheus text and agree with the conservation check")
    func metricsAgreeWithConservation() async throws {
        let statusPort = try FreePort.allocate()
        let harness = try await ProcessHarness(gatewayID: "gw-metrics", aggregatorSettings: ["batch_max_age_ms: 200"])
        defer { harness.dir.remove() }
        try "status_listen: 127.0.0.1:\(statusPort)\n".appendLine(toFile: harness.dir.file("agent.yaml"))
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(1_500, rate: 1_000).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        let sent = Double(manifest.entries.count)

        // The agent records its last ack just after the sink committed: wait until it has.
        try await eventually(timeout: .seconds(10), "the agent recorded every acknowledgement") {
            try await Self.scrape("http://127.0.0.1:\(statusPort)/metrics").value("tributary_agent_readings_acknowledged_total") == sent
        }
        let aggregatorText = try await Self.get("http://127.0.0.1:\(harness.httpPort)/metrics", token: try harness.adminToken)
        #expect(aggregatorText.headers.first(name: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let agentText = try await Self.get("http://127.0.0.1:\(statusPort)/metrics")
        for text in [aggregatorText.body, agentText.body] { try await Self.checkWithPrometheusParser(text, in: harness.dir) }
        let central = try Scrape(aggregatorText.body)
        let edge = try Scrape(agentText.body)
        #expect(central.value("tributary_readings_accepted_total") == sent)
        #expect(central.value("tributary_gateway_readings_synced_total", ["gateway": "gw-metrics"]) == sent)
        #expect(central.value("tributary_gateway_backlog_readings", ["gateway": "gw-metrics"]) == 0)
        #expect(central.value("tributary_gateways", ["state": "online"]) == 1)
        #expect(central.value("tributary_sink_up") == 1)
        let accepted = try #require(central.value("tributary_requests_total", ["outcome": "accepted"]))
        #expect(central.value("tributary_sink_write_seconds_count") == accepted + (central.value("tributary_requests_total", ["outcome": "duplicate"]) ?? 0))
        #expect(edge.value("tributary_agent_readings_ingested_total") == sent)
        #expect(edge.value("tributary_agent_readings_acknowledged_total") == sent)
        #expect(edge.value("tributary_agent_backlog_readings") == 0)
        #expect(edge.value("tributary_agent_requests_total", ["outcome": "accepted"]) == accepted)
        #expect(edge.value("tributary_agent_broker_connected") == 1)
        await harness.stop(agent, aggregator)
    }

    @Test("watch runs full-screen in a real terminal (tmux), refreshes, and q, Ctrl-C or SIGTERM restore the terminal")
    func watchInATerminal() async throws {
        guard Tmux.isInstalled() else { return }
        let harness = try await ProcessHarness(gatewayID: "gw-watched", aggregatorSettings: ["heartbeat_seconds: 1"])
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        try await eventually(timeout: .seconds(20), "the gateway reports") { try await harness.gateway() != nil }
        let tmux = Tmux(socket: harness.dir.file("tmux.sock"), logDirectory: harness.dir.path)
        defer { tmux.killServer() }
        let ctl = try ProcessHarness.executable("tributaryctl")
        for (session, quitKey) in [("quit-q", "q"), ("quit-ctrl-c", "C-c")] {
            try await tmux.start(session: session, width: 110, height: 20, command: """
                \(ctl) watch --aggregator http://127.0.0.1:\(harness.httpPort) --token-file \(harness.dir.file("aggregator/admin-token")) \
                --interval 0.5; echo "EXIT=$?"; stty -a | tr ' ' '\\n' | grep -x -- '-\\{0,1\\}\\(icanon\\|echo\\|isig\\)'; sleep 60
                """)
            var screen = ""
            try await eventually(timeout: .seconds(20), "watch draws the fleet") {
                screen = try await tmux.capture(session)
                return screen.contains("tributary fleet") && screen.contains("gw-watched") && screen.contains("online")
            }
            #expect(screen.contains("gateways 1 (1 online, 0 stale)"), "\(screen)")
            let firstClock = screen.split(separator: "\n").first.map(String.init) ?? ""
            try await eventually(timeout: .seconds(10), "watch refreshes in place") {
                let again = try await tmux.capture(session)
                return again.split(separator: "\n").first.map(String.init) != firstClock && again.contains("gw-watched")
            }
            try await tmux.sendKeys(session, quitKey)
            // Until stty has printed the modes too: they come a moment after EXIT=.
            try await eventually(timeout: .seconds(10), "watch exits on \(quitKey)") {
                let screen = try await tmux.capture(session)
                return screen.contains("EXIT=") && screen.contains("isig")
            }
            screen = try await tmux.capture(session)
            #expect(screen.contains("EXIT=0"), "\(quitKey): \(screen)")
            #expect(!screen.contains("tributary fleet"), "the alternate screen is left: \(screen)")
            let mode = Set(screen.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(mode.isSuperset(of: ["icanon", "echo", "isig"]) && mode.isDisjoint(with: ["-icanon", "-echo", "-isig"]),
                    "the terminal's modes are restored: \(screen)")
        }

        // Killed from outside (SIGTERM, as a closing ssh session or `kill` would): the terminal
        // is put back too, and the exit status says which signal.
        try await tmux.start(session: "killed", width: 110, height: 20, command: """
            \(ctl) watch --aggregator http://127.0.0.1:\(harness.httpPort) --token-file \(harness.dir.file("aggregator/admin-token")) \
            --interval 0.5; echo "EXIT=$?"; stty -a | tr ' ' '\\n' | grep -x -- '-\\{0,1\\}\\(icanon\\|echo\\|isig\\)'; sleep 60
            """)
        try await eventually(timeout: .seconds(20), "watch draws the fleet") { try await tmux.capture("killed").contains("gw-watched") }
        // The first two sessions' programs have exited, so this is the only watch left.
        let pid = try #require(Self.pid(of: "watch --aggregator http://127.0.0.1:\(harness.httpPort)"))
        #expect(kill(pid, SIGTERM) == 0)
        try await eventually(timeout: .seconds(10), "watch exits on SIGTERM") {
            let screen = try await tmux.capture("killed")
            return screen.contains("EXIT=") && screen.contains("isig")
        }
        let screen = try await tmux.capture("killed")
        #expect(screen.contains("EXIT=143"), "128 + SIGTERM: \(screen)")
        let mode = Set(screen.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        #expect(mode.isSuperset(of: ["icanon", "echo", "isig"]) && !screen.contains("tributary fleet"), "restored after SIGTERM: \(screen)")
        await harness.stop(agent, aggregator)
    }

    /// The pid of the tributaryctl process whose command line contains `text`.
    static func pid(of text: String) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry),
                  let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            // The program itself, not the shell running it (whose `-c` string holds the same text).
            let arguments = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if arguments.first?.hasSuffix("/tributaryctl") == true, arguments.joined(separator: " ").contains(text) { return pid }
        }
        return nil
    }

    /// An aggregator that accepts connections and never answers: q must still quit at once,
    /// not after the fetch's 10 s timeout.
    @Test("watch quits at once while the aggregator does not answer")
    func watchQuitsDuringAHungFetch() async throws {
        guard Tmux.isInstalled() else { return }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let silent = try SilentListener()
        defer { silent.close() }
        let tmux = Tmux(socket: dir.file("tmux.sock"), logDirectory: dir.path)
        defer { tmux.killServer() }
        try await tmux.start(session: "hung", width: 100, height: 20, command: """
            \(try ProcessHarness.executable("tributaryctl")) watch --aggregator http://127.0.0.1:\(silent.port) --token 0123456789abcdef \
            --interval 0.2; echo "EXIT=$?"; sleep 60
            """)
        try await eventually(timeout: .seconds(20), "watch is on screen") { try await tmux.capture("hung").contains("tributary fleet") }
        try await Task.sleep(for: .seconds(1))  // ticks pile up behind the hung fetch
        let pressed = ContinuousClock.now
        try await tmux.sendKeys("hung", "q")
        try await eventually(timeout: .seconds(20), "watch exits") { try await tmux.capture("hung").contains("EXIT=") }
        #expect(ContinuousClock.now - pressed < .seconds(5), "quit waited for the hung fetch")
        #expect(try await tmux.capture("hung").contains("EXIT=0"))
    }

    // MARK: helpers

    /// Runs tributaryctl against the harness's aggregator with the operator token (or none) and
    /// returns its exit code and output.
    static func ctl(_ harness: ProcessHarness, _ arguments: [String], token: String?? = .some(nil)) async throws -> (code: Int32, output: String) {
        // No token from the environment, nor from an aggregator installed on this machine.
        var args = ["-u", "TRIBUTARY_TOKEN", "TRIBUTARY_TOKEN_FILE=", try ProcessHarness.executable("tributaryctl")] + arguments
            + ["--aggregator", "http://127.0.0.1:\(harness.httpPort)"]
        if case .some(.none) = token { args += ["--token", try harness.adminToken] }
        return try await ProcessHarness.run("/usr/bin/env", args, in: harness.dir.path)
    }

    struct HTTPAnswer: CustomStringConvertible {
        let status: UInt
        let headers: HTTPHeaders
        let body: String
        var description: String { "\(status): \(body.prefix(300))" }
    }

    static func get(_ url: String, token: String? = nil) async throws -> HTTPAnswer {
        var request = HTTPClientRequest(url: url)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 16 << 20)
        return HTTPAnswer(status: response.status.code, headers: response.headers, body: String(buffer: body))
    }

    static func scrape(_ url: String) async throws -> Scrape {
        try Scrape(try await get(url).body)
    }

    /// Readings the agent's buffer file holds unacknowledged, and the oldest one's receive time.
    static func bufferFacts(_ path: String) throws -> (readings: Int, oldestReceivedMs: Int64) {
        let db = try SQLiteDatabase(path: path, readOnly: true)
        defer { db.close() }
        return try db.withConnection { c throws(SQLiteError) in
            let unsealed = try c.scalar("SELECT count(*) FROM readings")?.int64 ?? 0
            let sealed = try c.scalar("SELECT coalesce(sum(reading_count), 0) FROM batches WHERE set_aside = 0")?.int64 ?? 0
            let oldest = try c.scalar("""
                SELECT min(t) FROM (SELECT min(received_ms) AS t FROM readings
                                    UNION ALL SELECT min(oldest_received_ms) FROM batches WHERE set_aside = 0)
                """)?.int64 ?? 0
            return (Int(unsealed + sealed), oldest)
        }
    }

    /// The reference parser, Python's prometheus_client (apt: python3-prometheus-client, which
    /// ./scripts/test.sh installs). `Scrape` checks the format too, but is ours.
    static func checkWithPrometheusParser(_ text: String, in dir: TemporaryDirectory) async throws {
        let file = dir.file("metrics-\(UUID().uuidString).txt")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let script = """
            import sys
            try:
                from prometheus_client.parser import text_string_to_metric_families
            except ImportError:
                print("prometheus_client is not installed: apt-get install python3-prometheus-client"); sys.exit(1)
            families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
            print("PARSED", len(families), "families", sum(len(f.samples) for f in families), "samples")
            """
        let (code, output) = try await ProcessHarness.run("/usr/bin/python3", ["-c", script, file], in: dir.path)
        #expect(code == 0 && output.hasPrefix("PARSED"), "\(output)")
    }
}
