import Foundation
import Testing
import TributaryTesting

/// Prometheus's rule checker, from Debian's `prometheus` package.
let promtoolPath = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// The shipped Prometheus rules (deploy/prometheus/) and Grafana dashboards (deploy/grafana/):
/// promtool accepts the rules and every dashboard expression, the rules' unit tests pass (what
/// the rules mean with several aggregators), the dashboards' JSON is what their script writes,
/// and every metric either names is one a live aggregator, relay or agent exports, so no rule
/// or panel silently watches a series that never exists.
@Suite("alert rules", .serialized, .enabled(if: promtoolPath != nil, "promtool is not installed (apt-get install prometheus)"))
struct AlertRulesTests {
    static var promtool: String? { promtoolPath }

    static var deployDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy")
    }

    static var rulesDirectory: String { deployDirectory.appendingPathComponent("prometheus").path }
    static var dashboardsDirectory: String { deployDirectory.appendingPathComponent("grafana").path }
    static let dashboardFiles = ["tributary-fleet.json", "tributary-gateway.json"]

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

    @Test("the dashboards are what make-dashboards.py writes, and promtool checks every expression in them")
    func dashboardsAreChecked() async throws {
        let promtool = try #require(Self.promtool)
        let dir = try TemporaryDirectory(prefix: "tributary-dashboards")
        defer { dir.remove() }
        let generate = try await ProcessHarness.run("/usr/bin/env", ["python3", Self.dashboardsDirectory + "/make-dashboards.py", "--out", dir.file("generated")],
                                                    in: dir.path)
        #expect(generate.code == 0, "\(generate.output)")
        let committed = try FileManager.default.contentsOfDirectory(atPath: Self.dashboardsDirectory).filter { $0.hasSuffix(".json") }.sorted()
        #expect(committed == Self.dashboardFiles)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("generated")).sorted() == Self.dashboardFiles)
        for name in Self.dashboardFiles {
            let written = try String(contentsOfFile: dir.file("generated/" + name), encoding: .utf8)
            let shipped = try String(contentsOfFile: Self.dashboardsDirectory + "/" + name, encoding: .utf8)
            let same = written == shipped  // not in the expectation, which would print both files
            #expect(same, "deploy/grafana/\(name) is not what make-dashboards.py writes: run it and commit the JSON")
            // Importable anywhere: the data source is a variable, and every panel names it.
            let dashboard = try JSONSerialization.jsonObject(with: Data(shipped.utf8)) as? [String: Any]
            let variables = (dashboard?["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
            #expect(variables.contains { $0["name"] as? String == "DS_PROMETHEUS" && $0["type"] as? String == "datasource" }, "\(name)")
            let dataSources = shipped.components(separatedBy: "\"datasource\": {").count - 1
            #expect(dataSources > 0 && dataSources == shipped.components(separatedBy: "\"uid\": \"${DS_PROMETHEUS}\"").count - 1, "\(name)")
        }

        // Each expression as a recording rule, with Grafana's variables given concrete values:
        // promtool parses every one, and a variable the map does not know is left as a `$`.
        let queries = try Self.dashboardQueries()
        #expect(queries.expressions.count > 40)
        #expect(queries.variables.contains { $0.contains("gateway") }, "the gateway dashboard chooses its gateway by a variable")
        var rules = "groups:\n  - name: dashboards\n    rules:\n"
        for (index, expression) in queries.expressions.enumerated() {
            let concrete = Self.withVariablesReplaced(expression)
            #expect(!concrete.contains("$"), "a Grafana variable the test does not know: \(expression)")
            // A YAML single-quoted scalar: nothing is escaped but the quote itself.
            rules += "      - record: dashboard:expression_\(index)\n        expr: '\(concrete.replacingOccurrences(of: "'", with: "''"))'\n"
        }
        try rules.write(toFile: dir.file("dashboards-rules.yml"), atomically: true, encoding: .utf8)
        let check = try await ProcessHarness.run(promtool, ["check", "rules", dir.file("dashboards-rules.yml")], in: dir.path)
        #expect(check.code == 0 && check.output.contains("\(queries.expressions.count) rules found"), "\(check.output)")
    }

    @Test("every tributary_ metric the rules and dashboards name is exported by a live aggregator, relay or agent")
    func everyMetricExists() async throws {
        let province = try await ProcessHarness(gatewayID: "gw-rules", proxied: true)
        defer { province.dir.remove() }
        let statusPort = try FreePort.allocate()
        try "status_listen: 127.0.0.1:\(statusPort)\n".appendLine(toFile: province.dir.file("agent.yaml"))
        let relay = try TierTests.Relay("city-rules", in: province, port: province.agentTargetPort, upstreamPort: province.httpPort, keepsCopy: false)
        let top = try await province.startAggregator()
        let relayProcess = try await relay.start()
        let agent = try await province.startAgent()
        try await FreePort.waitUntilListening(statusPort)
        var exported: Set<String> = []
        let relayToken = try String(contentsOfFile: relay.dir + "/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let endpoints: [(Int, String?)] = [(province.httpPort, try province.adminToken), (relay.port, relayToken), (statusPort, nil)]
        for (port, token) in endpoints {
            let text = try await OperatorTests.get("http://127.0.0.1:\(port)/metrics", token: token).body
            for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
                let name = String(line.split(separator: " ")[2])
                exported.formUnion([name, name + "_bucket", name + "_sum", name + "_count"])
            }
        }
        #expect(exported.contains("tributary_agent_backlog_readings") && exported.contains("tributary_relay_spool_batches"))
        let rules = try String(contentsOfFile: Self.rulesDirectory + "/tributary-alerts.yml", encoding: .utf8)
        let usedByRules = Self.metricNames(rules.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }.joined(separator: "\n"))
        #expect(!usedByRules.isEmpty)
        #expect(usedByRules.subtracting(exported).isEmpty, "named by the rules, exported by nobody: \(usedByRules.subtracting(exported).sorted())")
        let queries = try Self.dashboardQueries()
        let usedByDashboards = Self.metricNames((queries.expressions + queries.variables).joined(separator: "\n"))
        #expect(usedByDashboards.count > 30)
        #expect(usedByDashboards.subtracting(exported).isEmpty,
                "named by the dashboards, exported by nobody: \(usedByDashboards.subtracting(exported).sorted())")
        await province.stop(agent, relayProcess, top)
    }

    /// The `tributary_` metric names in PromQL text (a histogram's `_bucket`, `_sum` and
    /// `_count` series are matched against the family's names).
    static func metricNames(_ text: String) -> Set<String> {
        Set(text.matches(of: /tributary_[a-z0-9_]+/).map { String($0.output) })
    }

    /// Every panel target's `expr` (rows' nested panels included) and every query variable's
    /// query (`label_values(...)`, not PromQL) in the shipped dashboards.
    static func dashboardQueries() throws -> (expressions: [String], variables: [String]) {
        var expressions: [String] = []
        var variables: [String] = []
        func walk(_ panels: [Any]) {
            for case let panel as [String: Any] in panels {
                walk(panel["panels"] as? [Any] ?? [])
                for case let target as [String: Any] in panel["targets"] as? [Any] ?? [] {
                    if let expression = target["expr"] as? String { expressions.append(expression) }
                }
            }
        }
        for name in dashboardFiles {
            let data = try Data(contentsOf: URL(fileURLWithPath: dashboardsDirectory + "/" + name))
            guard let dashboard = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TestingError("deploy/grafana/\(name) is not a JSON object")
            }
            walk(dashboard["panels"] as? [Any] ?? [])
            let templating = dashboard["templating"] as? [String: Any]
            for case let variable as [String: Any] in templating?["list"] as? [Any] ?? [] where variable["type"] as? String == "query" {
                if let query = (variable["query"] as? [String: Any])?["query"] as? String ?? variable["query"] as? String { variables.append(query) }
            }
        }
        return (expressions, variables)
    }

    /// Grafana's variables as a query would see them once chosen: a range for the rate
    /// intervals, a regex matching every aggregator, one gateway.
    static func withVariablesReplaced(_ expression: String) -> String {
        let values = ["$__rate_interval": "2m", "$__interval": "1m", "$__range": "1h", "${instance}": ".+", "$instance": ".+",
                      "${gateway}": "gw-rules", "$gateway": "gw-rules"]
        return values.keys.sorted { $0.count > $1.count }.reduce(expression) { $0.replacingOccurrences(of: $1, with: values[$1]!) }
    }
}
