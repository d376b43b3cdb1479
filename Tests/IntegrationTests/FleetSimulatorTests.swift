import Foundation
import Testing
import TributaryCore
import TributarySimulator
import TributaryTesting

/// `tributary-sim fleet`: hundreds of virtual gateways against a real aggregator and sink.
@Suite("fleet simulator")
struct FleetSimulatorTests {
    /// 300 gateways, some losing acknowledgements and some restarting (keeping or wiping their
    /// buffer): the sink holds every acknowledged reading exactly once, and the fleet view
    /// knows every gateway with its count.
    @Test func threeHundredGatewaysEndInAnExactVerify() async throws {
        let harness = try await ProcessHarness(gatewayID: "unused")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let manifestPath = harness.dir.file("fleet.jsonl")
        let (code, output) = try await ProcessHarness.run(try ProcessHarness.executable("tributary-sim"), [
            "fleet", "--aggregator", "http://127.0.0.1:\(harness.httpPort)", "--gateways", "300", "--batches", "3",
            "--batch-size", "40", "--rate", "200", "--lost-acks", "0.1", "--restarts", "0.2", "--seed", "5",
            "--manifest", manifestPath, "--json",
        ], in: harness.dir.path)
        #expect(code == 0, "\(output)")
        let fields = try Self.report(output)
        func number(_ name: String) -> Double { Self.number(name, in: fields) }
        #expect(number("gateways_served") == 300 && number("rejected") == 0)
        #expect(number("readings") == 300 * 3 * 40)
        #expect(number("lost_acks") > 0 && number("restarts") > 0 && number("new_epochs") > 0)
        // Every lost acknowledgement and every kept-buffer restart resent a batch the sink had.
        #expect(number("duplicates") >= number("lost_acks"))
        #expect(number("ack_ms_p50") > 0 && number("ack_ms_p99") >= number("ack_ms_p50"))

        let manifest = try Manifest.read(from: manifestPath)
        #expect(manifest.entries.count == 300 * 3 * 40)
        let report = try await Verifier.verify(manifest, sink: harness.sink)
        #expect(report.passed && report.found == manifest.entries.count, "\(report)")

        let fleet = try await harness.fleet()
        #expect(fleet.gateways.filter { $0.gatewayID.hasPrefix("fleet-") }.count == 300)
        #expect(fleet.gateways.reduce(0) { $0 + $1.readingsSynced } == UInt64(manifest.entries.count))
        // Lost acks, resends and restarts, and every virtual gateway's chain is whole.
        let chains = fleet.gateways.compactMap(\.chain)
        #expect(chains.count == 300 && chains.allSatisfy { $0.intact && $0.waiting == 0 && $0.startSequence == 1 },
                "\(chains.filter { !$0.intact || $0.waiting > 0 || $0.startSequence != 1 }.prefix(3))")
        await harness.stop(aggregator)
    }

    /// A burst while the aggregator is unreachable: gateways keep sealing on schedule into their
    /// backlogs while they back off, drain oldest first once it is back, send heartbeats when idle,
    /// and the sink holds exactly what they sealed.
    @Test func burstBacklogAndHeartbeatsEndInAnExactVerify() async throws {
        let harness = try await ProcessHarness(gatewayID: "unused", proxied: true)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        // The proxy refuses connections for the first seconds: every gateway's first sends fail.
        try "0s refuse\n4s accept\n".write(toFile: harness.dir.file("faults"), atomically: true, encoding: .utf8)
        let proxy = try await harness.startProxy(["--script", harness.dir.file("faults")])
        let manifestPath = harness.dir.file("fleet.jsonl")
        let (code, output) = try await ProcessHarness.run(try ProcessHarness.executable("tributary-sim"), [
            "fleet", "--aggregator", "http://127.0.0.1:\(harness.agentTargetPort)", "--gateways", "5", "--duration", "12s",
            "--rate", "2", "--batch-size", "10", "--burst", "4:4", "--heartbeat-seconds", "0.5", "--retry-max-ms", "1000",
            "--seed", "3", "--manifest", manifestPath, "--json",
        ], in: harness.dir.path)
        #expect(code == 0, "\(output)")
        let fields = try Self.report(output)
        func number(_ name: String) -> Double { Self.number(name, in: fields) }
        #expect(number("gateways_served") == 5 && number("rejected") == 0 && number("undelivered") == 0)
        #expect(number("unreachable") > 0, "the refusals were retried")
        #expect(number("heartbeats") > 0)
        // Every reading the schedules sealed, during the outage too, was acknowledged.
        #expect(number("offered_readings") > 0 && number("readings") == number("offered_readings"))
        #expect(number("lag_s_max") > 0 && number("lag_s_max") >= number("lag_s_p99"))
        #expect(fields.contains { $0.0 == "catch_up_seconds" } && number("burst_factor") == 4)

        let manifest = try Manifest.read(from: manifestPath)
        #expect(Double(manifest.entries.count) == number("readings"))
        let report = try await Verifier.verify(manifest, sink: harness.sink)
        #expect(report.passed && report.found == manifest.entries.count, "\(report)")
        let fleet = try await harness.fleet()
        #expect(fleet.gateways.filter { $0.gatewayID.hasPrefix("fleet-") }.count == 5)
        await harness.stop(aggregator, proxy)
    }

    /// An aggregator with gateway_auth: `--token-file` gives each virtual gateway its token and
    /// the run verifies exactly; a file missing a gateway's token is refused before anything is sent.
    /// Over HTTPS too: the aggregator executable reads its tls: section, the simulator trusts its CA.
    @Test func gatewaysSendTheirTokens() async throws {
        let dir = try TemporaryDirectory()
        let tokenFile = dir.file("gateway-tokens")
        let pki = try await TestPKI(in: dir)
        let server = try await pki.server()
        let harness = try await ProcessHarness(gatewayID: "unused", aggregatorConfig: [
            "gateway_auth:", "  token_file: \(tokenFile)",
            "tls:", "  cert_file: \(server.certificate)", "  key_file: \(server.key)",
        ], directory: dir)
        defer { harness.dir.remove() }
        let lines = (0..<20).map { "\(FleetSimulator.gatewayID(index: $0, prefix: "fleet")) token-\(String(format: "%04d", $0))-0123456789abcdef" }
        try TemporaryDirectory.writeSecret(lines.joined(separator: "\n") + "\n", to: tokenFile)
        let aggregator = try await harness.startAggregator()
        let manifestPath = harness.dir.file("fleet.jsonl")
        let arguments = ["fleet", "--aggregator", "https://127.0.0.1:\(harness.httpPort)", "--ca-file", pki.caFile, "--gateways", "20",
                         "--batches", "2", "--batch-size", "50", "--rate", "500", "--manifest", manifestPath]

        try dir.writeSecret("partial-tokens", lines.dropLast().joined(separator: "\n") + "\n")
        let (refused, refusal) = try await ProcessHarness.run(try ProcessHarness.executable("tributary-sim"),
                                                              arguments + ["--token-file", dir.file("partial-tokens")], in: harness.dir.path)
        #expect(refused != 0 && refusal.contains("no token for fleet-0020"), "\(refusal)")

        let (code, output) = try await ProcessHarness.run(try ProcessHarness.executable("tributary-sim"),
                                                          arguments + ["--token-file", tokenFile], in: harness.dir.path)
        #expect(code == 0, "\(output)")
        let manifest = try Manifest.read(from: manifestPath)
        #expect(manifest.entries.count == 20 * 2 * 50)
        let report = try await Verifier.verify(manifest, sink: harness.sink)
        #expect(report.passed && report.found == manifest.entries.count, "\(report)")

        // tributaryctl reads the fleet over the same HTTPS, trusting the CA it is given.
        let ctl = try ProcessHarness.executable("tributaryctl")
        let common = ["gateways", "--aggregator", "https://127.0.0.1:\(harness.httpPort)", "--token-file", dir.file("aggregator/admin-token")]
        let (listed, listing) = try await ProcessHarness.run(ctl, common + ["--ca-file", pki.caFile, "--json"], in: harness.dir.path)
        #expect(listed == 0 && listing.contains("fleet-0020") && listing.contains("fleet-0001"), "\(listing)")
        let (untrusted, untrustedOutput) = try await ProcessHarness.run(ctl, common, in: harness.dir.path)
        #expect(untrusted != 0 && untrustedOutput.contains("cannot reach the aggregator"), "\(untrustedOutput)")
        await harness.stop(aggregator)
    }

    /// The fields of the fleet's JSON report line.
    static func report(_ output: String) throws -> [(String, JSONValue)] {
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("{") })
        guard case .object(let fields) = try JSONValue.parse(Array(line.utf8)) else { throw TestingError("not a JSON report: \(line)") }
        return fields
    }

    /// A number of the report, -1 for one it lacks (or null).
    static func number(_ name: String, in fields: [(String, JSONValue)]) -> Double {
        switch fields.first(where: { $0.0 == name })?.1 {
        case .integer(let i)?: Double(i)
        case .double(let d)?: d
        default: -1
        }
    }
}
