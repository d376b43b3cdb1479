import Foundation
import Testing
import TributaryAdminAPI
import TributaryTesting

/// A gateway whose token is wrong delivers nothing; it must be seen as refused everywhere an
/// operator looks, not only as "stale": the fleet view (by the id it claims), the audit line,
/// the aggregator's log, the agent's /readyz, `tributaryctl gateways` and a bare `check`.
@Suite("refused credentials are visible")
struct RefusedCredentialsTests {
    @Test("a wrong gateway token shows in gateways, audit, the agent's /readyz, the logs and a bare check; fixing it delivers everything")
    func wrongTokenIsVisible() async throws {
        let dir = try TemporaryDirectory()
        let good = "token-of-gw-wrong-0123456789abcdef"
        try dir.writeSecret("gateway-tokens", "gw-wrong \(good)\n")
        try dir.writeSecret("agent-token", "not-the-token-0123456789abcdef\n")
        let statusPort = try FreePort.allocate()
        let harness = try await ProcessHarness(gatewayID: "gw-wrong",
                                               aggregatorSettings: ["token_file: \(dir.file("agent-token"))", "heartbeat_seconds: 1",
                                                                    "batch_max_age_ms: 200", "retry_max_ms: 1000"],
                                               aggregatorConfig: ["gateway_auth:", "  token_file: \(dir.file("gateway-tokens"))"],
                                               directory: dir)
        defer { harness.dir.remove() }
        try "status_listen: 127.0.0.1:\(statusPort)\n".appendLine(toFile: harness.dir.file("agent.yaml"))
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(50, rate: 200).value

        // The agent: not ready, and says why.
        try await FreePort.waitUntilListening(statusPort)
        try await eventually(timeout: .seconds(30), "the agent's /readyz says its credentials are refused") {
            let ready = try await OperatorTests.get("http://127.0.0.1:\(statusPort)/readyz")
            return ready.status == 503 && ready.body.contains("refuses this gateway's credentials")
        }
        // The fleet view: the refused sender, by the id it claims, with the reason and address.
        let view = try await harness.fleet()
        let refused = try #require(view.refusedSenders?.first, "\(String(describing: view.refusedSenders))")
        #expect(refused.claimedGateway == "gw-wrong" && refused.lastPeer == "127.0.0.1" && refused.refusals >= 1, "\(refused)")
        #expect(refused.lastReason.contains("token"), "\(refused)")
        #expect(!view.gateways.contains { $0.gatewayID == "gw-wrong" }, "an unauthenticated sender is not a gateway in the registry")
        let table = try await OperatorTests.ctl(harness, ["gateways"])
        #expect(table.code == 0 && table.output.contains("Refused for their credentials") && table.output.contains("gw-wrong"), "\(table.output)")
        let status = try await OperatorTests.ctl(harness, ["status"])
        #expect(status.output.contains("credentials  1 gateway(s) refused"), "\(status.output)")
        // A bare check fails on it, and names it.
        let check = try await OperatorTests.ctl(harness, ["check"])
        #expect(check.code == 2 && check.output.contains("'gw-wrong' (as it claims) refused for its credentials"), "\(check.output)")
        #expect(try await OperatorTests.ctl(harness, ["check", "--ignore-refused"]).code == 0)
        // Metrics, the audit line (claimed id and peer) and the aggregator's log.
        let metrics = try Scrape(try await OperatorTests.get("http://127.0.0.1:\(harness.httpPort)/metrics", token: try harness.adminToken).body)
        #expect(metrics.value("tributary_refused_senders") == 1)
        #expect((metrics.value("tributary_requests_total", ["outcome": "unauthorized"]) ?? 0) >= 1)
        let audit = try FileManager.default.contentsOfDirectory(atPath: harness.dir.file("aggregator/audit"))
            .map { try String(contentsOfFile: harness.dir.file("aggregator/audit/\($0)"), encoding: .utf8) }.joined()
        #expect(audit.contains("\"claimed\":\"gw-wrong\"") && audit.contains("\"outcome\":\"unauthorized\"") && audit.contains("\"peer\":\"127.0.0.1\""),
                "\(audit.prefix(600))")
        #expect(ProcessHarness.tail(harness.dir.file("aggregator.log"), lines: 200).contains("credentials were refused"))
        #expect(ProcessHarness.tail(harness.dir.file("agent.log"), lines: 200).contains("heartbeat not delivered"))

        // Fixed, without a restart: the agent reads its token file again, and everything it held
        // arrives, once.
        try dir.writeSecret("agent-token", good + "\n")
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed && report.found == manifest.entries.count, "\(report)")
        #expect(harness.agentLog.contains("aggregator token reloaded"))
        try await eventually(timeout: .seconds(30), "the agent is ready again") {
            try await OperatorTests.get("http://127.0.0.1:\(statusPort)/readyz").status == 200
        }
        // Once it proves who it is, it is no longer listed as refused, and check passes again.
        try await eventually(timeout: .seconds(10), "the fixed gateway leaves the refused senders") {
            (try await harness.fleet().refusedSenders ?? []).isEmpty
        }
        let fixedCheck = try await OperatorTests.ctl(harness, ["check"])
        #expect(fixedCheck.code == 0, "\(fixedCheck.output)")
        await harness.stop(agent, aggregator)
    }

    /// A token rotated under traffic: the new token is added beside the old one (the aggregator
    /// takes both, and logs the reload when the file changes), the agent's token file is
    /// rewritten (it rereads it), the old line is removed. No request is refused, nothing is
    /// lost or doubled.
    @Test("a gateway token rotated under traffic: two tokens at once, the agent rereads its file, nothing refused, lost or doubled")
    func tokenRotation() async throws {
        let dir = try TemporaryDirectory()
        let old = "old-token-of-gw-rot-0123456789abcdef", new = "new-token-of-gw-rot-0123456789abcdef"
        try dir.writeSecret("gateway-tokens", "gw-rot \(old)\n")
        try dir.writeSecret("agent-token", old + "\n")
        let harness = try await ProcessHarness(gatewayID: "gw-rot",
                                               aggregatorSettings: ["token_file: \(dir.file("agent-token"))", "batch_max_age_ms: 100"],
                                               aggregatorConfig: ["gateway_auth:", "  token_file: \(dir.file("gateway-tokens"))"],
                                               directory: dir)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let traffic = try harness.publish(3000, rate: 300)
        try await Task.sleep(for: .seconds(2))
        try dir.writeSecret("gateway-tokens", "gw-rot \(old)\ngw-rot \(new)\n")
        try await eventually(timeout: .seconds(10), "the aggregator logs the reload as it happens") {
            ProcessHarness.tail(harness.dir.file("aggregator.log"), lines: 400).contains("gateway tokens reloaded")
        }
        try dir.writeSecret("agent-token", new + "\n")
        try await eventually(timeout: .seconds(10), "the agent rereads its token") { harness.agentLog.contains("aggregator token reloaded") }
        try await Task.sleep(for: .seconds(1))
        try dir.writeSecret("gateway-tokens", "gw-rot \(new)\n")
        let manifest = try await traffic.value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed && report.found == manifest.entries.count, "\(report)")
        let refused = try await harness.fleet().refusedSenders ?? []
        #expect(refused.isEmpty, "no request was refused during the rotation: \(refused)")
        await harness.stop(agent, aggregator)
    }
}
