import Foundation
import Testing
import TributaryConfig
@testable import TributaryAgent
import TributaryTesting

@Suite("agent configuration")
struct AgentConfigTests {
    static let issueExample = """
        gateway_id: gw-001
        data_dir: /var/lib/tributary
        mqtt:
          broker: mqtt://127.0.0.1:1883
          subscriptions:
            - topic: "site/+/+/+"
              template: "site/{gateway}/{sensor}/{metric}"
              format: number
            - topic: "devices/+/state"          # literal levels in templates are matched, not captured
              template: "devices/{sensor}/state"
              format: json
              time_field: ts
        aggregator:
          url: http://127.0.0.1:8470
        """

    @Test func documentedShapeLoads() throws {
        let config = try AgentConfig.parse(yaml: Self.issueExample, file: "agent.yaml")
        #expect(config.gatewayID == "gw-001")
        #expect(config.mqtt.subscriptions.count == 2)
        #expect(config.mqtt.subscriptions[1].timeField == "ts")
        #expect(config.mqttClientID == "tributary-gw-001")
        #expect(config.aggregator.url == "http://127.0.0.1:8470")
        #expect(config.buffer.synchronous == .normal)
        #expect(config.buffer.maxBytes == 1 << 30 && config.buffer.fullPolicy == .block && config.buffer.diskReserveBytes == 8 << 20)
        #expect(config.aggregator.maxInFlightBatches == 4)
    }

    @Test func theShippedExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = root.appendingPathComponent("deploy/examples/agent.yaml").path
        let config = try AgentConfig.load(file: file)
        #expect(config.buffer.maxBytes == 1 << 30 && config.buffer.diskReserveBytes == 8 << 20)
        #expect(config.aggregator.maxInFlightBatches == 4)
    }

    @Test func quotaTakesUnits() throws {
        let config = try AgentConfig.parse(yaml: Self.issueExample + "\nbuffer:\n  max_bytes: 256MiB\n  full_policy: drop_oldest\n", file: nil)
        #expect(config.buffer.maxBytes == 256 << 20 && config.buffer.fullPolicy == .dropOldest)
    }

    @Test func flagsOverrideTheFile() throws {
        let config = try AgentConfig.parse(yaml: Self.issueExample, file: "agent.yaml", overrides: .init(
            gatewayID: "gw-002", broker: "mqtt://10.0.0.5:1884", aggregatorURL: "http://agg:9000", dataDirectory: "/tmp/x"))
        #expect(config.gatewayID == "gw-002")
        #expect(config.mqtt.broker.host == "10.0.0.5" && config.mqtt.broker.port == 1884)
        #expect(config.aggregator.url == "http://agg:9000")
        #expect(config.dataDirectory == "/tmp/x")
    }

    @Test func severalAggregatorsFromTheFileOrTheFlag() throws {
        let file = try AgentConfig.parse(yaml: Self.issueExample.components(separatedBy: "\naggregator:")[0]
            + "\naggregator:\n  urls: [http://agg-1:8470/, http://agg-2:8470]\n  failback_seconds: 3\n", file: "agent.yaml")
        #expect(file.aggregator.urls == ["http://agg-1:8470", "http://agg-2:8470"] && file.aggregator.failbackSeconds == 3)
        var overrides = AgentConfig.Overrides()
        overrides.aggregatorURLs = ["http://a:1,http://b:2", "http://c:3"]
        let flags = try AgentConfig.parse(yaml: Self.issueExample, file: "agent.yaml", overrides: overrides)
        #expect(flags.aggregator.urls == ["http://a:1", "http://b:2", "http://c:3"])
        #expect(try AgentConfig.parse(yaml: Self.issueExample, file: nil).aggregator.failbackSeconds == 10)
    }

    @Test(arguments: [
        ("aggregator:\n  url: http://a:1\n  urls: [http://b:2]\n", "aggregator.urls", "not both"),
        ("aggregator:\n  urls: []\n", "aggregator.urls", "empty"),
        ("aggregator:\n  urls: [http://a:1, http://a:1/]\n", "aggregator.urls[1]", "listed twice"),
        ("aggregator:\n  urls: [http://a:1, ftp://b]\n", "aggregator.urls[1]", "not an http"),
        ("aggregator:\n  urls: [http://a:1, http://b:2]\n  tls:\n    ca_file: /etc/hostname\n", "aggregator.tls", "no aggregator URL is https"),
    ])
    func badAggregatorListsNameTheKey(_ yaml: String, _ key: String, _ words: String) {
        let base = Self.issueExample.components(separatedBy: "\naggregator:")[0]
        #expect {
            _ = try AgentConfig.parse(yaml: base + "\n" + yaml, file: "agent.yaml")
        } throws: { error in
            "\(error)".contains("'\(key)'") && "\(error)".contains(words) && "\(error)".contains("agent.yaml")
        }
    }

    @Test func statusListenerIsOffByDefault() throws {
        var config = try AgentConfig.parse(yaml: Self.issueExample, file: nil)
        #expect(config.statusListen == nil && config.logFormat == .text)
        config = try AgentConfig.parse(yaml: Self.issueExample + "\nstatus_listen: 127.0.0.1:8471\nlog_format: json\n", file: nil)
        #expect(config.statusListen?.host == "127.0.0.1" && config.statusListen?.port == 8471 && config.logFormat == .json)
        config = try AgentConfig.parse(yaml: Self.issueExample, file: nil, overrides: .init(statusListen: "[::1]:0", logFormat: .json))
        #expect(config.statusListen?.host == "::1" && config.statusListen?.port == 0 && config.logFormat == .json)
    }

    @Test(arguments: [
        ("gateway_id: a\nmqtt:\n  subscriptons: []\n", "mqtt.subscriptons", "unknown key"),
        (issueExample + "\nbuffer:\n  synchronous: sometimes\n", "buffer.synchronous", "not one of"),
        (issueExample.replacingOccurrences(of: "format: number", with: "format: xml"), "mqtt.subscriptions[0].format", "not one of"),
        (issueExample.replacingOccurrences(of: "{metric}\"", with: "{metrik}\""), "mqtt.subscriptions[0].template", "unknown placeholder"),
        (issueExample.replacingOccurrences(of: "mqtt://127.0.0.1:1883", with: "tcp://x:1"), "mqtt.broker", "supported schemes are mqtt:// and mqtts://"),
        (issueExample + "\naggregator_typo: 1\n", "aggregator_typo", "unknown key"),
        ("gateway_id: gw\n", "mqtt.subscriptions", "at least one subscription"),
        (issueExample.replacingOccurrences(of: "gw-001", with: "gw 001!"), "gateway_id", "letters, digits"),
        (issueExample + "\nbuffer:\n  max_bytes: lots\n", "buffer.max_bytes", "expected a size"),
        (issueExample + "\nbuffer:\n  max_bytes: 4k\n", "buffer.max_bytes", "too small"),
        (issueExample + "\nbuffer:\n  full_policy: drop_newest\n", "buffer.full_policy", "block, drop_oldest"),
        (issueExample.replacingOccurrences(of: "  url: http://127.0.0.1:8470", with: "  url: http://127.0.0.1:8470\n  max_in_flight_batches: 0"),
         "aggregator.max_in_flight_batches", "out of range"),
        (issueExample + "\nstatus_listen: 8471\n", "status_listen", "not HOST:PORT"),
        (issueExample + "\nlog_format: xml\n", "log_format", "text, json"),
        (issueExample.replacingOccurrences(of: "  url: http://127.0.0.1:8470", with: "  url: http://127.0.0.1:8470\n  token_file: /nonexistent/token"),
         "aggregator.token_file", "/nonexistent/token does not exist"),
    ])
    func errorsNameTheKeyAndFile(_ yaml: String, _ key: String, _ message: String) {
        do {
            _ = try AgentConfig.parse(yaml: yaml, file: "/etc/tributary/agent.yaml")
            Issue.record("expected an error for \(key)")
        } catch {
            #expect(error.key == key)
            #expect(error.message.contains(message), "\(error)")
            #expect(error.description.hasPrefix("/etc/tributary/agent.yaml: key '\(key)'"))
        }
    }

    /// `--check-config` and a refused reload name every problem, each with its line; a problem
    /// inside a section does not make the keys after it "unknown".
    @Test func everyProblemIsNamedWithItsLine() throws {
        let yaml = """
            gateway_id: gw-001
            mqtt:
              broker: mqtt://127.0.0.1:1883
              keepalive_seconds: 1
              subscriptions:
                - topic: "site/+/+/+"
                  template: "site/{gateway}/{sensr}/{metric}"
                  format: number
                - topic: "devices/+/state"
                  template: "devices/{sensor}/state"
                  format: jsn
            buffer:
              max_bytes: lots
              full_policy: block
            aggregator:
              url: http://127.0.0.1:8470
              batch_max_readings: 0
            status_listen: 8471
            colour: blue
            """
        do {
            _ = try AgentConfig.parseAll(yaml: yaml, file: "a.yaml")
            Issue.record("expected problems")
        } catch {
            let found = error.problems.map { "\($0.key)@\($0.line ?? 0)" }
            #expect(found == [
                "mqtt.subscriptions[0].template@7", "mqtt.subscriptions[1].format@11", "mqtt.keepalive_seconds@4",
                "buffer.max_bytes@13", "aggregator.batch_max_readings@17", "status_listen@18", "colour@19",
            ], "\(error)")
            #expect(error.problems.allSatisfy { $0.description.hasPrefix("a.yaml: key '") && $0.description.hasSuffix(")") })
        }
        // The throwing loader gives the first of them.
        #expect(throws: ConfigError.self) { try AgentConfig.parse(yaml: yaml, file: "a.yaml") }
    }

    /// What a reload refuses: keys a running agent cannot take, each named.
    @Test func restartOnlyKeysAreNamed() throws {
        let running = try AgentConfig.parse(yaml: Self.issueExample, file: "a.yaml")
        let live = try AgentConfig.parse(yaml: Self.issueExample.replacingOccurrences(of: "{metric}\"", with: "{metric}\"\n      classification: core")
            + "\nbuffer:\n  max_bytes: 2GB\nlog_level: debug\n", file: "a.yaml")
        #expect(running.restartOnlyChanges(to: live).isEmpty)
        let fixed = try AgentConfig.parse(yaml: Self.issueExample.replacingOccurrences(of: "data_dir: /var/lib/tributary", with: "data_dir: /srv/t")
            .replacingOccurrences(of: "mqtt://127.0.0.1:1883", with: "mqtt://127.0.0.1:1884"), file: "a.yaml")
        #expect(running.restartOnlyChanges(to: fixed) == ["data_dir", "mqtt.broker"])
        var host = running
        host.sparkplug.hostID = "scada-1"
        #expect(running.restartOnlyChanges(to: host) == ["sparkplug.host_id"], "the STATE will is set on the connection")
    }

    @Test func theTokenFileIsReadAtStart() throws {
        let path = NSTemporaryDirectory() + "agent-token-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let yaml = Self.issueExample.replacingOccurrences(of: "  url: http://127.0.0.1:8470", with: "  url: http://127.0.0.1:8470\n  token_file: \(path)")
        try TemporaryDirectory.writeSecret("0123456789abcdef0123\n", to: path)
        #expect(try AgentConfig.parse(yaml: yaml, file: "a.yaml").aggregator.token == "0123456789abcdef0123")
        try TemporaryDirectory.writeSecret("short\n", to: path)
        #expect(throws: ConfigError.self) { try AgentConfig.parse(yaml: yaml, file: "a.yaml") }
        // A token every user on the gateway can read is refused, naming the remedy.
        try "0123456789abcdef0123\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try AgentConfig.parse(yaml: yaml, file: "a.yaml") } throws: { "\($0)".contains("aggregator.token_file") && "\($0)".contains("chmod 600") }
    }

    @Test func aggregatorTLSFilesAreCheckedAtStart() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let pki = try await TestPKI(in: dir)
        let own = try await pki.client("gw-1")
        func yaml(url: String = "https://127.0.0.1:8470", _ tls: String) -> String {
            Self.issueExample.replacingOccurrences(of: "  url: http://127.0.0.1:8470", with: "  url: \(url)\n  tls:\n" + tls)
        }
        let config = try AgentConfig.parse(yaml: yaml("    ca_file: \(pki.caFile)\n    cert_file: \(own.certificate)\n    key_file: \(own.key)\n"), file: "a.yaml")
        #expect(config.aggregator.tls == .init(caFile: pki.caFile, certificateFile: own.certificate, keyFile: own.key))
        _ = try config.aggregator.tls?.clientConfiguration(gatewayID: "gw-1")
        #expect { _ = try config.aggregator.tls?.clientConfiguration(gatewayID: "gw-9") } throws: { "\($0)".contains("is gateway gw-1's certificate") }

        func refused(_ yaml: String, key: String, _ message: String) {
            #expect {
                _ = try AgentConfig.parse(yaml: yaml, file: "a.yaml")
            } throws: { error in
                (error as? ConfigError)?.key == key && "\(error)".contains(message) && "\(error)".contains("a.yaml")
            }
        }
        refused(yaml(url: "http://127.0.0.1:8470", "    ca_file: \(pki.caFile)\n"), key: "aggregator.tls", "is https://")
        refused(yaml("    ca_file: \(dir.file("nope.pem"))\n"), key: "aggregator.tls.ca_file", "nope.pem")
        refused(yaml("    cert_file: \(own.certificate)\n"), key: "aggregator.tls.key_file", "needs its key_file")
        // A key that is not the certificate's: found when the agent starts, not at the first batch.
        let other = try await pki.client("gw-2")
        let mismatched = try AgentConfig.parse(yaml: yaml("    cert_file: \(own.certificate)\n    key_file: \(other.key)\n"), file: "a.yaml")
        #expect { _ = try mismatched.aggregator.tls?.clientConfiguration(gatewayID: "gw-1") } throws: { "\($0)".contains("aggregator.tls") }
    }

    // MARK: mqtt credentials and TLS

    /// The issue example with `lines` added to its `mqtt:` section and, when given, its broker replaced.
    static func withMQTT(_ lines: [String], broker: String? = nil) -> String {
        var yaml = issueExample.replacingOccurrences(of: "  broker: mqtt://127.0.0.1:1883",
                                                     with: (["  broker: \(broker ?? "mqtt://127.0.0.1:1883")"] + lines.map { "  " + $0 }).joined(separator: "\n"))
        yaml += "\n"
        return yaml
    }

    /// A directory of files for one test, removed by `remove()`.
    struct Files {
        let directory = NSTemporaryDirectory() + "agent-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        init() throws { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        func write(_ name: String, _ text: String, mode: Int = 0o600) throws -> String {
            let path = directory + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
            return path
        }
        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    @Test func thePasswordFileIsReadAtStartWithoutItsNewline() throws {
        let files = try Files()
        defer { files.remove() }
        for (text, expected) in [("s3cret pass\n", "s3cret pass"), ("s3cret\r\n", "s3cret"), ("no-newline", "no-newline")] {
            let path = try files.write("password", text)
            let config = try AgentConfig.parse(yaml: Self.withMQTT(["username: gw-001", "password_file: \(path)"]), file: "a.yaml")
            #expect(config.mqtt.username == "gw-001" && config.mqtt.password == expected)
        }
        let inline = try AgentConfig.parse(yaml: Self.withMQTT(["username: u", "password: p"]), file: nil)
        #expect(inline.mqtt.password == "p" && inline.mqtt.tls == nil)
        // A link to the file, as a secret mount makes: the target's type and mode count.
        let target = try files.write("mounted", "via-link\n")
        let link = files.directory + "/password-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let linked = try AgentConfig.parse(yaml: Self.withMQTT(["username: u", "password_file: \(link)"]), file: nil)
        #expect(linked.mqtt.password == "via-link")
    }

    @Test func passwordFileErrorsNameTheKeyAndFileAndNeverTheContents() throws {
        let files = try Files()
        defer { files.remove() }
        let secret = try files.write("password", "hunter2-secret\n")
        let cases: [(yaml: String, key: String, message: String)] = [
            (Self.withMQTT(["username: u", "password: p", "password_file: \(secret)"]), "mqtt.password_file", "either password or password_file (\(secret))"),
            (Self.withMQTT(["username: u", "password_file: \(files.directory)/missing"]), "mqtt.password_file", "\(files.directory)/missing does not exist"),
            (Self.withMQTT(["username: u", "password_file: \(try files.write("empty", "\n"))"]), "mqtt.password_file", "is empty"),
            (Self.withMQTT(["username: u", "password_file: \(try files.write("two-lines", "hunter2-secret\nmore\n"))"]), "mqtt.password_file", "must hold one line"),
            (Self.withMQTT(["username: u", "password_file: \(try files.write("shared", "hunter2-secret\n", mode: 0o644))"]), "mqtt.password_file", "chmod 600"),
            (Self.withMQTT(["password_file: \(secret)"]), "mqtt.username", "no username"),
        ]
        for c in cases {
            do {
                _ = try AgentConfig.parse(yaml: c.yaml, file: "/etc/tributary/agent.yaml")
                Issue.record("expected an error for \(c.key)")
            } catch {
                #expect(error.key == c.key && error.message.contains(c.message), "\(error)")
                #expect(error.description.hasPrefix("/etc/tributary/agent.yaml: key '\(c.key)'"))
                #expect(!error.description.contains("hunter2"), "the password never shows: \(error)")
            }
        }
    }

    @Test func tlsFilesAreCheckedAtStart() throws {
        let files = try Files()
        defer { files.remove() }
        let ca = try files.write("ca.pem", "CA"), cert = try files.write("gw.pem", "CERT"), key = try files.write("gw.key", "KEY")
        let config = try AgentConfig.parse(yaml: Self.withMQTT(["tls:", "  ca_file: \(ca)", "  cert_file: \(cert)", "  key_file: \(key)"],
                                                               broker: "mqtts://broker.example.com"), file: nil)
        #expect(config.mqtt.broker.tls && config.mqtt.broker.port == 8883)
        #expect(config.mqtt.tls == .init(caFile: ca, certificateFile: cert, keyFile: key))
        // mqtts:// alone: the system's CAs, no client certificate.
        let systemCAs = try AgentConfig.parse(yaml: Self.withMQTT([], broker: "mqtts://broker.example.com:18883"), file: nil)
        #expect(systemCAs.mqtt.broker.tls && systemCAs.mqtt.broker.port == 18883 && systemCAs.mqtt.tls == nil)

        let mqtts = "mqtts://broker.example.com"
        let fifo = files.directory + "/ca.fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let cases: [(yaml: String, key: String, message: String)] = [
            (Self.withMQTT(["tls:", "  ca_file: \(files.directory)/nope.pem"], broker: mqtts), "mqtt.tls.ca_file", "\(files.directory)/nope.pem does not exist"),
            (Self.withMQTT(["tls:", "  ca_file: \(files.directory)"], broker: mqtts), "mqtt.tls.ca_file", "is a directory"),
            // Reading a FIFO waits for a writer: refused, not waited on (it hung a reload).
            (Self.withMQTT(["tls:", "  ca_file: \(fifo)"], broker: mqtts), "mqtt.tls.ca_file", "\(fifo) is not a regular file: it is a FIFO"),
            (Self.withMQTT(["tls:", "  ca_file: /dev/zero"], broker: mqtts), "mqtt.tls.ca_file", "/dev/zero is not a regular file"),
            (Self.withMQTT(["tls:", "  cert_file: \(cert)"], broker: mqtts), "mqtt.tls.key_file", "needs its key_file"),
            (Self.withMQTT(["tls:", "  key_file: \(key)"], broker: mqtts), "mqtt.tls.cert_file", "needs its cert_file"),
            (Self.withMQTT(["tls:", "  cert_file: \(cert)", "  key_file: \(files.directory)/gone.key"], broker: mqtts), "mqtt.tls.key_file", "gone.key does not exist"),
            (Self.withMQTT(["tls:", "  ca_file: \(ca)"]), "mqtt.tls", "use mqtts://"),
            (Self.withMQTT(["tls:", "  ca_file: \(ca)", "  insecure: true"], broker: mqtts), "mqtt.tls.insecure", "unknown key"),
        ]
        for c in cases {
            do {
                _ = try AgentConfig.parse(yaml: c.yaml, file: "/etc/tributary/agent.yaml")
                Issue.record("expected an error for \(c.key)")
            } catch {
                #expect(error.key == c.key && error.message.contains(c.message), "\(error)")
                #expect(error.description.hasPrefix("/etc/tributary/agent.yaml: key '\(c.key)'"))
            }
        }
    }

    @Test func timeZoneIsReadAndItsMistakesNamed() throws {
        func subscription(_ extra: String) -> String {
            """
            gateway_id: gw
            mqtt:
              subscriptions:
                - topic: "tele/+/SENSOR"
                  template: "tele/{sensor}/SENSOR"
            \(extra)
            """
        }
        let config = try AgentConfig.parse(yaml: subscription("      time_field: Time\n      time_zone: Asia/Shanghai"), file: "agent.yaml")
        #expect(config.mqtt.subscriptions[0].timeZone?.description == "Asia/Shanghai")
        for (extra, expected) in [
            ("      time_zone: \"+08:00\"", "set time_field too"),
            ("      time_field: Time\n      time_zone: Shanghai", "IANA zone name"),
            ("      time_field: Time\n      time_zone: \"+8\"", "+HH:MM"),
        ] {
            do {
                _ = try AgentConfig.parse(yaml: subscription(extra), file: "agent.yaml")
                Issue.record("accepted \(extra)")
            } catch {
                #expect(error.description.contains("time_zone") && error.description.contains("agent.yaml") && error.description.contains(expected),
                        "\(error)")
            }
        }
    }

    /// `sparkplug.host_id`: one topic level, and only with a Sparkplug subscription to read
    /// what the edge nodes waiting for it send.
    @Test func sparkplugHostIDIsOneTopicLevel() throws {
        let sparkplug = """
            gateway_id: gw
            mqtt:
              subscriptions:
                - topic: "spBv1.0/#"
                  format: sparkplug
            """
        #expect(try AgentConfig.parse(yaml: sparkplug, file: "agent.yaml").sparkplug.hostID == nil)
        let config = try AgentConfig.parse(yaml: sparkplug + "\nsparkplug:\n  host_id: scada-1\n", file: "agent.yaml")
        #expect(config.sparkplug.hostID == "scada-1")
        for (yaml, expected) in [
            (sparkplug + "\nsparkplug:\n  host_id: \"\"\n", "cannot be empty"),
            (sparkplug + "\nsparkplug:\n  host_id: plant/scada\n", "contains '/'"),
            (sparkplug + "\nsparkplug:\n  host_id: \"scada+\"\n", "contains '+'"),
            (sparkplug + "\nsparkplug:\n  host_id: \"#\"\n", "contains '#'"),
            (sparkplug + "\nsparkplug:\n  host_id: [a, b]\n", "expected"),
            (Self.issueExample + "\nsparkplug:\n  host_id: scada-1\n", "no subscription has format: sparkplug"),
        ] {
            do {
                _ = try AgentConfig.parse(yaml: yaml, file: "/etc/tributary/agent.yaml")
                Issue.record("accepted \(yaml)")
            } catch {
                #expect(error.key == "sparkplug.host_id" && error.message.contains(expected), "\(error)")
                #expect(error.description.hasPrefix("/etc/tributary/agent.yaml: key 'sparkplug.host_id'"), "\(error)")
            }
        }
        do {
            _ = try AgentConfig.parse(yaml: sparkplug + "\nsparkplug:\n  hostid: scada-1\n", file: "agent.yaml")
            Issue.record("accepted a misspelt key")
        } catch {
            #expect(error.key == "sparkplug.hostid" && error.message.contains("unknown key"), "\(error)")
        }
    }
}
