import Foundation
import Testing
import TributaryClickHouse
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

    @Test func theSinkMustBeOnTheAllowList() throws {
        let list = """
            data_dir: /var/lib/agg
            sink_allow_list:
              - sqlite:/var/lib/agg/sink.sqlite
              - clickhouse://writer:secret@CH-1.example:8123/tributary
            """
        // The default sink, the same file spelled another way, and ClickHouse under another user.
        #expect(try AggregatorConfig.parse(yaml: list, file: "agg.yaml").sinkAllowList?.count == 2)
        #expect(try AggregatorConfig.parse(yaml: list, file: "agg.yaml", overrides: .init(sink: "sqlite:/var/lib/agg/../agg/sink.sqlite")).sinkIsAllowed)
        #expect(try AggregatorConfig.parse(yaml: list, file: "agg.yaml", overrides: .init(sink: "clickhouse://reader@ch-1.example/tributary")).sinkIsAllowed)

        for (sink, key) in [("sqlite:/tmp/elsewhere.sqlite", "sink_allow_list"), ("clickhouse://ch-1.example:8123/other", "sink_allow_list"),
                            ("clickhouse://ch-2.example:8123/tributary", "sink_allow_list")] {
            #expect {
                _ = try AggregatorConfig.parse(yaml: list, file: "agg.yaml", overrides: .init(sink: sink))
            } throws: { error in
                let text = "\(error)"
                return text.contains("agg.yaml") && text.contains(key) && text.contains("--sink") && !text.contains("secret")
            }
        }
        #expect {
            _ = try AggregatorConfig.parse(yaml: "sink_allow_list:\n  - postgres://x\n", file: "agg.yaml")
        } throws: { "\($0)".contains("sink_allow_list[0]") }
        #expect {
            _ = try AggregatorConfig.parse(yaml: "sink_allow_list: sqlite:/x\n", file: "agg.yaml")
        } throws: { "\($0)".contains("expected a list") }

        // Set in code after parsing, the aggregator itself refuses to start.
        var config = try AggregatorConfig.parse(yaml: list, file: "agg.yaml")
        config.sink = .sqlite(path: "/tmp/elsewhere.sqlite")
        #expect { _ = try Aggregator(config: config, logger: .init(label: "test")) } throws: { "\($0)".contains("sink_allow_list") }
    }

    @Test func clickHouseCredentialsComeFromTheURLOrTheConfigNotBoth() throws {
        let config = try AggregatorConfig.parse(yaml: """
            data_dir: /tmp/x
            sink: clickhouse://ch.example:8123/tributary
            clickhouse:
              user: ingest
              password: s3cret
              timeout_seconds: 5
              max_insert_batches: 32
            """, file: "agg.yaml")
        #expect(config.sink == .clickhouse(ClickHouseEndpoint(host: "ch.example", port: 8123, user: "ingest", password: "s3cret")))
        #expect(config.clickHouse.timeout == .seconds(5) && config.clickHouse.maxInsertBatches == 32)
        do {
            _ = try AggregatorConfig.parse(yaml: """
                data_dir: /tmp/x
                sink: clickhouse://a:b@ch.example/tributary
                clickhouse:
                  password: other
                """, file: "agg.yaml")
            Issue.record("accepted two passwords")
        } catch {
            #expect(error.description.contains("clickhouse.password") && error.description.contains("agg.yaml"), "\(error)")
        }
    }
}
