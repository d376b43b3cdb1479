import Foundation
import Testing
import TributaryCrypto
import TributaryCtl
import TributaryTesting

/// INSTALL.md's secure install, by its own steps: `deploy/make-pki.sh` makes the CA and
/// the aggregator's certificate, the gateway token is made with the shell lines of INSTALL.md's
/// "Gateway tokens" step (run as written, in a scratch directory instead of /etc/tributary),
/// and the real aggregator and agent, configured as the doc says, deliver over HTTPS with the
/// token: every reading once.
@Suite("the secure install, by the doc's steps")
struct SecureInstallTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The first ```sh block after `heading` in INSTALL.md.
    static func shellBlock(after heading: String) throws -> String {
        let doc = try String(contentsOf: root.appendingPathComponent("INSTALL.md"), encoding: .utf8)
        guard let start = doc.range(of: heading), let open = doc.range(of: "```sh\n", range: start.upperBound..<doc.endIndex),
              let close = doc.range(of: "```", range: open.upperBound..<doc.endIndex) else {
            throw TestingError("INSTALL.md has no sh block after '\(heading)'")
        }
        return doc[open.upperBound..<close.lowerBound].split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "\n")
    }

    @Test("make-pki.sh, the doc's token lines, tls: and gateway_auth: a gateway delivers over HTTPS with its token")
    func secureInstallDelivers() async throws {
        let dir = try TemporaryDirectory()
        let etc = dir.file("etc")
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        let pki = try await ProcessHarness.run(Self.root.appendingPathComponent("deploy/make-pki.sh").path, [dir.file("pki"), "localhost", "127.0.0.1"],
                                               in: dir.path)
        #expect(pki.code == 0, "\(pki.output)")
        // The token lines as INSTALL.md writes them, with this directory for /etc/tributary and
        // root's group for the service's (no tributary user here).
        let tokenLines = try Self.shellBlock(after: "3. **Gateway tokens.**")
            .replacingOccurrences(of: "/etc/tributary", with: etc).replacingOccurrences(of: "-g tributary", with: "-g 0")
        let made = try await ProcessHarness.run("/bin/bash", ["-euo", "pipefail", "-c", tokenLines], in: dir.path)
        #expect(made.code == 0, "\(tokenLines)\n\(made.output)")
        let line = try #require(made.output.split(separator: "\n").first { $0.hasPrefix("gw-001 ") }, "\(made.output)")
        let token = String(line.split(separator: " ")[1])
        try dir.writeSecret("gateway-token", token + "\n")

        let harness = try await ProcessHarness(gatewayID: "gw-001",
                                               aggregatorSettings: ["token_file: \(dir.file("gateway-token"))", "tls:", "  ca_file: \(dir.file("pki/aggregator-ca.pem"))"],
                                               aggregatorConfig: ["tls:", "  cert_file: \(dir.file("pki/aggregator.pem"))", "  key_file: \(dir.file("pki/aggregator.key"))",
                                                                  "gateway_auth:", "  token_file: \(etc)/gateway-tokens"],
                                               directory: dir)
        defer { harness.dir.remove() }
        // The agent by the name in the certificate, over HTTPS, as INSTALL.md's agent section writes it.
        let agentYAML = try String(contentsOfFile: dir.file("agent.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "url: http://127.0.0.1:\(harness.httpPort)", with: "url: https://localhost:\(harness.httpPort)")
        #expect(agentYAML.contains("https://localhost"))
        try agentYAML.write(toFile: dir.file("agent.yaml"), atomically: true, encoding: .utf8)
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(300, rate: 300).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed && report.found == manifest.entries.count, "\(report)")
        let fleet = try FleetClient(aggregator: "https://localhost:\(harness.httpPort)", token: try harness.adminToken,
                                    tls: try TLSFiles.trusting(dir.file("pki/aggregator-ca.pem"), key: "--ca-file"))
        let view = try await fleet.fleet().view
        #expect(view.gateways.map(\.gatewayID) == ["gw-001"] && (view.refusedSenders ?? []).isEmpty, "\(view.gateways.map(\.gatewayID))")
        await harness.stop(agent, aggregator)
    }
}
