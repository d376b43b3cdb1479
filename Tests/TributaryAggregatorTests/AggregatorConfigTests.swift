import Foundation
import Testing
import TributaryClickHouse
@testable import TributaryAggregator

@Suite("aggregator configuration")
struct AggregatorConfigTests {
    @Test func theShippedExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let config = try AggregatorConfig.load(file: root.appendingPathComponent("deploy/examples/aggregator.yaml").path)
        #expect(config.limits.maxInFlightBatches == 256 && config.limits.maxInFlightBytes == 64 << 20)
        #expect(config.staleAfterSeconds == 120)
        #expect(config.clickHouse.maxInsertBatches == 256 && config.clickHouse.timeout == .seconds(30))
        #expect(config.clickHouse.insertQuorum == 0 && config.clickHouse.insertQuorumTimeout == .seconds(10))
        #expect(config.clickHouse.compression == .auto)
        #expect(try AggregatorConfig.parse(yaml: "clickhouse:\n  compression: gzip\n", file: "agg.yaml").clickHouse.compression == .gzip)
        #expect {
            _ = try AggregatorConfig.parse(yaml: "clickhouse:\n  compression: lz4\n", file: "agg.yaml")
        } throws: { "\($0)".contains("clickhouse.compression") && "\($0)".contains("agg.yaml") }
        #expect(config.logFormat == .text)
        #expect(config.adminToken == .file(path: "/var/lib/tributary-aggregator/admin-token", createIfMissing: true))
    }

    @Test func theTierExamplesLoad() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tier-examples-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The secrets and certificates the examples name, made here.
        for name in ["relay-token", "gateway-tokens", "province-ca.pem", "province.pem", "province.key"] {
            let text = name == "relay-token" ? "0123456789abcdef0123\n" : "city-jinan 0123456789abcdef0123\n"
            try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/" + name)
        }
        func load(_ example: String) throws -> AggregatorConfig {
            let text = try String(contentsOfFile: root.appendingPathComponent("deploy/examples/tiers/" + example).path, encoding: .utf8)
            let yaml = text.replacingOccurrences(of: "/etc/tributary/relay-token", with: dir + "/relay-token")
                .replacingOccurrences(of: "/etc/tributary", with: dir)
            return try AggregatorConfig.parse(yaml: yaml, file: example)
        }
        let city = try load("city-relay.yaml")
        #expect(city.relayID == "city-jinan" && city.keepsLocalCopy)
        let upstream = try #require(city.upstream)
        #expect(upstream.url == "https://province.example:8470" && upstream.maxSpoolBytes == 10 << 30 && upstream.maxHops == 8)
        #expect(upstream.token != nil && upstream.tls?.caFile == dir + "/province-ca.pem")
        let province = try load("province.yaml")
        #expect(province.upstream == nil && province.trustedRelays == ["city-jinan", "city-qingdao"])
    }

    @Test func theHighAvailabilityExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ha-example-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["gateway-tokens", "admin-token", "clickhouse-ca.pem", "aggregator.pem", "aggregator.key"] {
            try (name == "gateway-tokens" ? "gw-1 0123456789abcdef0123\n" : "0123456789abcdef0123\n").write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/" + name)
        }
        let text = try String(contentsOfFile: root.appendingPathComponent("deploy/examples/ha/aggregator.yaml").path, encoding: .utf8)
        #expect(throws: Never.self) {
            _ = try AggregatorConfig.parse(yaml: text.replacingOccurrences(of: "/etc/tributary", with: dir), file: "ha/aggregator.yaml")
        }
    }

    @Test func aRelayMayKeepNoCopyAndTheFlagMakesOne() throws {
        let config = try AggregatorConfig.parse(yaml: "sink: none\n", file: "a.yaml", overrides: .init(upstream: "http://127.0.0.1:9000/"))
        #expect(config.upstream?.url == "http://127.0.0.1:9000" && !config.keepsLocalCopy && config.sinkIsAllowed)
        #expect(try AggregatorConfig.parse(yaml: "", file: "a.yaml").upstream == nil)
    }

    @Test func aRelayMayListSeveralUpstreams() throws {
        let config = try AggregatorConfig.parse(yaml: "upstream:\n  urls: [http://p-1:8470, http://p-2:8470]\n  failback_seconds: 5\n", file: "a.yaml")
        #expect(config.upstream?.urls == ["http://p-1:8470", "http://p-2:8470"] && config.upstream?.failbackSeconds == 5)
        let flag = try AggregatorConfig.parse(yaml: "", file: "a.yaml", overrides: .init(upstream: "http://p-1:8470,http://p-2:8470"))
        #expect(flag.upstream?.urls == ["http://p-1:8470", "http://p-2:8470"])
    }

    @Test(arguments: [
        ("sink: none\n", "sink"),
        ("upstream:\n  url: http://a:1\n  urls: [http://b:2]\n", "upstream.urls"),
        ("listen: 127.0.0.1:8470\nupstream:\n  urls: [http://p:1, http://localhost:8470]\n", "upstream.urls"),
        ("upstream:\n  token_file: /x\n", "upstream.url"),
        ("upstream:\n  url: ftp://x\n", "upstream.url"),
        ("upstream:\n  url: http://x:1\n  tls:\n    ca_file: /etc/hostname\n", "upstream.tls"),
        ("upstream:\n  url: http://x:1\n  max_spool_bytes: 1k\n", "upstream.max_spool_bytes"),
        ("upstream:\n  url: http://x:1\n  max_hops: 0\n", "upstream.max_hops"),
        ("upstream:\n  url: http://x:1\n  spool: 1\n", "upstream.spool"),
        ("relay_id: \"two words\"\n", "relay_id"),
        ("listen: 127.0.0.1:8470\nupstream:\n  url: http://localhost:8470\n", "upstream.url"),
        ("upstream:\n  url: http://x:1\n  token_file: /etc/hostname\n", "upstream.token_file"),
        ("trusted_relays: [ok, \"\"]\n", "trusted_relays[1]"),
    ])
    func badRelaySettingsNameTheKey(_ yaml: String, _ key: String) {
        #expect {
            _ = try AggregatorConfig.parse(yaml: yaml, file: "agg.yaml")
        } throws: { error in
            "\(error)".contains(key) && "\(error)".contains("agg.yaml")
        }
    }

    /// `admin.tokens_file` alone: named tokens only, no unnamed token made; with `token`: both.
    @Test func namedOperatorTokens() throws {
        let alone = try AggregatorConfig.parse(yaml: "admin:\n  tokens_file: /etc/tributary/operators\n", file: "agg.yaml")
        #expect(alone.operatorTokenFile == "/etc/tributary/operators" && alone.adminToken == .none)
        let both = try AggregatorConfig.parse(yaml: "admin:\n  token: 0123456789abcdef0123\n  tokens_file: /etc/tributary/operators\n", file: "agg.yaml")
        #expect(both.operatorTokenFile == "/etc/tributary/operators" && both.adminToken == .inline("0123456789abcdef0123"))
        #expect(throws: AggregatorStartError.self) { try NamedTokens.parse("alice\n", file: "ops", key: "admin.tokens_file", holder: .operator) }
        do {
            _ = try NamedTokens.parse("al/ice 0123456789abcdef\n", file: "ops", key: "admin.tokens_file", holder: .operator)
        } catch {
            #expect(error.message == "admin.tokens_file ops line 1: the first field is not a valid operator name (letters, digits, '-', '_', '.')")
        }
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
              insert_quorum: 2
              insert_quorum_timeout_seconds: 4
            """, file: "agg.yaml")
        #expect(config.sink == .clickhouse(ClickHouseEndpoint(host: "ch.example", port: 8123, user: "ingest", password: "s3cret")))
        #expect(config.clickHouse.timeout == .seconds(5) && config.clickHouse.maxInsertBatches == 32)
        #expect(config.clickHouse.insertQuorum == 2 && config.clickHouse.insertQuorumTimeout == .seconds(4))
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

    /// `max_in_flight_bytes` is live, and the per-address share that follows it by default with
    /// it (a reload was refused as a change of the connection limits: attack round 14).
    @Test func inFlightBytesReloadLiveWithTheirPerAddressShare() throws {
        let running = try AggregatorConfig.parse(yaml: "limits:\n  max_in_flight_bytes: 67108864\n", file: "a.yaml")
        let fresh = try AggregatorConfig.parse(yaml: "limits:\n  max_in_flight_bytes: 268435456\n", file: "a.yaml")
        #expect(fresh.limits.connections.maxInFlightBytesPerAddress != running.limits.connections.maxInFlightBytesPerAddress)
        #expect(running.restartOnlyChanges(to: fresh).isEmpty)
        let fewerConnections = try AggregatorConfig.parse(yaml: "limits:\n  max_connections: 100\n", file: "a.yaml")
        #expect(running.restartOnlyChanges(to: fewerConnections).count == 1)
    }

    /// The limits' sizes take units, as the agent's do ("64MiB" was refused); out of range is
    /// named with the key.
    @Test func limitSizesTakeUnits() throws {
        let config = try AggregatorConfig.parse(yaml: "limits:\n  max_in_flight_bytes: 128MiB\n  max_body_bytes: 8M\n  max_string_bytes: 2k\n",
                                                file: "a.yaml")
        #expect(config.limits.maxInFlightBytes == 128 << 20 && config.limits.maxBodyBytes == 8 << 20
                && config.limits.batch.maxStringBytes == 2048)
        do {
            _ = try AggregatorConfig.parse(yaml: "limits:\n  max_body_bytes: 2GiB\n", file: "a.yaml")
            Issue.record("2GiB is past max_body_bytes' range")
        } catch {
            #expect(error.description.contains("key 'limits.max_body_bytes'") && error.description.contains("out of range"), "\(error)")
        }
    }
}
