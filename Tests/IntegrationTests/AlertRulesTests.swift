import Foundation
import Testing
import TributaryTesting

/// Prometheus's rule checker, from Debian's `prometheus` package.
let promtoolPath = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// The shipped Prometheus rules (deploy/prometheus/): promtool accepts them, their unit tests
/// pass (what the rules mean with several aggregators), and every metric they name is one a
/// live aggregator or relay exports, so no rule silently watches a series that never exists.
@Suite("alert rules", .serialized, .enabled(if: promtoolPath != nil, "promtool is not installed (apt-get install prometheus)"))
struct AlertRulesTests {
    static var promtool: String? { promtoolPath }

    static var rulesDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/prometheus").path
    }

    @Test("promtool checks the rules, and their unit tests pass")
    func promtoolAcceptsThem() async throws {
        let promtool = try #require(Self.promtool)
        let dir = try TemporaryDirectory(prefix: "tributary-rules")
        defer { dir.remove() }
        let check = try await ProcessHarness.run(promtool, ["check", "rules", Self.rulesDirectory + "/tributary-alerts.yml"], in: dir.path)
        #expect(check.code == 0, "\(check.output)")
        // The test file names the rules relative to itself.
        let unit = try await ProcessHarness.run(promtool, ["test", "rules", Self.rulesDirectory + "/tests/tributary-alerts-test.yml"], in: dir.path)
        #expect(unit.code == 0 && unit.output.contains("SUCCESS"), "\(unit.output)")
    }

    @Test("every tributary_ metric the rules name is exported by a live aggregator or relay")
    func everyMetricExists() async throws {
        let province = try await ProcessHarness(gatewayID: "gw-rules", proxied: true)
        defer { province.dir.remove() }
        let relay = try TierTests.Relay("city-rules", in: province, port: province.agentTargetPort, upstreamPort: province.httpPort, keepsCopy: false)
        let top = try await province.startAggregator()
        let relayProcess = try await relay.start()
        var exported: Set<String> = []
        let relayToken = try String(contentsOfFile: relay.dir + "/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for (port, token) in [(province.httpPort, try province.adminToken), (relay.port, relayToken)] {
            let text = try await OperatorTests.get("http://127.0.0.1:\(port)/metrics", token: token).body
            for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
                let name = String(line.split(separator: " ")[2])
                exported.formUnion([name, name + "_bucket", name + "_sum", name + "_count"])
            }
        }
        let rules = try String(contentsOfFile: Self.rulesDirectory + "/tributary-alerts.yml", encoding: .utf8)
        let used = Set(rules.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
            .flatMap { line in line.matches(of: /tributary_[a-z0-9_]+/).map { String($0.output) } })
        #expect(!used.isEmpty)
        #expect(used.subtracting(exported).isEmpty, "named by the rules, exported by nobody: \(used.subtracting(exported).sorted())")
        await province.stop(relayProcess, top)
    }
}
