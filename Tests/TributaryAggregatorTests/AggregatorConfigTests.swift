import Foundation
import Testing
@testable import TributaryAggregator

@Suite("aggregator configuration")
struct AggregatorConfigTests {
    @Test func theShippedExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let config = try AggregatorConfig.load(file: root.appendingPathComponent("deploy/examples/aggregator.yaml").path)
        #expect(config.limits.maxInFlightBatches == 64 && config.limits.maxInFlightBytes == 64 << 20)
        #expect(config.staleAfterSeconds == 120)
        #expect(config.clickHouse.maxInsertBatches == 256 && config.clickHouse.timeout == .seconds(30))
        #expect(config.logFormat == .text)
        #expect(config.adminToken == .file(path: "/var/lib/tributary-aggregator/admin-token", createIfMissing: true))
    }

    @Test func adminTokenAndLogFormat() throws {
        var config = try AggregatorConfig.parse(yaml: "admin:\n  token_file: /etc/tributary/admin-token\nlog_format: json\n", file: "a.yaml")
        #expect(config.adminToken == .file(path: "/etc/tributary/admin-token", createIfMissing: false))
        #expect(config.logFormat == .json)
        config = try AggregatorConfig.parse(yaml: "admin:\n  token: 0123456789abcdef0123\n", file: "a.yaml", overrides: .init(logFormat: .json))
        #expect(config.adminToken == .inline("0123456789abcdef0123"))
        #expect(config.logFormat == .json)
    }

    @Test(arguments: [
        ("admin:\n  token: short\n", "admin.token"),
        ("admin:\n  token: 0123456789abcdef0123\n  token_file: /x\n", "admin.token"),
        ("admin:\n  tokn: x\n", "admin.tokn"),
        ("log_format: xml\n", "log_format"),
    ])
    func badOperatorSettingsNameTheKey(_ yaml: String, _ key: String) {
        #expect {
            _ = try AggregatorConfig.parse(yaml: yaml, file: "agg.yaml")
        } throws: { error in
            "\(error)".contains(key) && "\(error)".contains("agg.yaml")
        }
    }
}
