import Foundation
import Testing
import TributarySimulator
import TributaryBuffer
import TributaryMQTT
import TributarySQLite
import TributaryTesting

/// SIGHUP and `--check-config` on the real executables: a mosquitto broker, the aggregator with
/// its SQLite sink, and the agent as a process that is sent SIGHUP while a simulator publishes.
@Suite("configuration reload and check", .serialized)
struct ConfigReloadTests {
    static let settings = ["batch_max_age_ms: 100", "batch_max_readings: 250", "retry_initial_ms: 50", "retry_max_ms: 500",
                           "heartbeat_seconds: 1"]

    /// The harness's agent.yaml with `edit` applied to its text.
    static func rewriteAgentConfig(_ harness: ProcessHarness, _ edit: (String) -> String) throws {
        let path = harness.dir.file("agent.yaml")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try edit(text).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Sends SIGHUP and waits until the agent logged the outcome (`said`), counted from before.
    static func hangUp(_ agent: ChildProcess, _ harness: ProcessHarness, until said: String) async throws {
        let before = harness.agentLog.components(separatedBy: said).count
        #expect(kill(agent.pid, SIGHUP) == 0)
        try await eventually(timeout: .seconds(30), "the agent logs '\(said)'") {
            harness.agentLog.components(separatedBy: said).count > before
        }
    }

    /// The readings the sink holds of one gateway, or of one of its sensors.
    static func sinkCount(_ harness: ProcessHarness, gateway: String, sensor: String? = nil) throws -> Int64 {
        guard FileManager.default.fileExists(atPath: harness.sinkPath) else { return 0 }
        let db = try SQLiteDatabase(path: harness.sinkPath, readOnly: true)
        defer { db.close() }
        return try db.withConnection { (c) throws(SQLiteError) -> Int64 in
            var count: Int64 = 0
            let query = "SELECT count(*) FROM readings WHERE gateway_id = ?" + (sensor == nil ? "" : " AND sensor_id = ?")
            try c.forEach(query, [gateway] + (sensor.map { [$0] } ?? [])) { row in
                count = row.int64(0)
            }
            return count
        }
    }

    @Test("SIGHUP five times under traffic, subscriptions added and removed live: 0 missing, 0 duplicates")
    func reloadUnderTraffic() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-reload", aggregatorSettings: Self.settings)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let publishing = try harness.publish(4000, rate: 500)
        // A filter the simulator never publishes to, added and removed; batching, quota, log
        // level changed back and forth; the simulator's subscriptions stay.
        let extra = """
                  - topic: "extra/+/+"
                    template: "extra/{gateway}/{sensor}"
                    format: json
            """
        for round in 0..<5 {
            try await Task.sleep(for: .milliseconds(500))
            try Self.rewriteAgentConfig(harness) { text in
                var text = text.replacingOccurrences(of: "batch_max_readings: \(round % 2 == 0 ? 250 : 100)",
                                                     with: "batch_max_readings: \(round % 2 == 0 ? 100 : 250)")
                if round % 2 == 0 {
                    text = text.replacingOccurrences(of: "  subscriptions:\n", with: "  subscriptions:\n" + extra + "\n")
                    text += "\nlog_level: debug\n"
                } else {
                    text = text.replacingOccurrences(of: extra + "\n", with: "").replacingOccurrences(of: "\nlog_level: debug\n", with: "")
                }
                return text
            }
            try await Self.hangUp(agent, harness, until: "configuration reloaded")
        }
        #expect(agent.isRunning)
        let log = harness.agentLog
        #expect(log.components(separatedBy: "subscribing to a filter added by a reload").count - 1 == 3, "\(ProcessHarness.tail(harness.dir.file("agent.log")))")
        #expect(log.components(separatedBy: "unsubscribing from a filter removed by a reload").count - 1 == 2)
        // log_level: debug was in force between reloads: debug lines were written.
        #expect(log.contains(" debug tributary-agent:"), "log_level from the file takes effect on reload")

        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        #expect(report.missing == 0 && report.duplicates == 0 && report.found == manifest.entries.count, "\(report)")

        // The last reload left the extra filter subscribed: a message on it is now delivered.
        try await harness.publishOne(topic: "extra/gw-reload-extra/added", payload: "{\"v\": 1}")
        try await eventually(timeout: .seconds(30), "the newly subscribed topic reaches the sink") {
            try Self.sinkCount(harness, gateway: "gw-reload-extra", sensor: "added") == 1
        }
        await harness.stop(agent, aggregator)
    }

    @Test("reloads while cut off from the broker, the first removing a filter, and one more while its queue drains after the UNSUBACK: what the broker queued for it is decoded, none quarantined")
    func removedFilterWhileCutOff() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-cutoff", aggregatorSettings: Self.settings, brokerProxied: true)
        defer { harness.dir.remove() }
        let extra = """
                  - topic: "extra/#"
                    template: "extra/{gateway}/{sensor}"
                    format: json
                    time_field: ts
            """
        try Self.rewriteAgentConfig(harness) { $0.replacingOccurrences(of: "  subscriptions:\n", with: "  subscriptions:\n" + extra + "\n") }
        let aggregator = try await harness.startAggregator()
        var proxy = try await harness.startProxy([], on: .agentToBroker)
        let agent = try await harness.startAgent()

        // Cut off: the broker keeps the agent's persistent session, extra/# in it, and queues.
        await proxy.stop(signal: SIGTERM)
        try await eventually(timeout: .seconds(30), "the agent lost the broker") { harness.agentLog.contains("MQTT connection lost") }
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: harness.broker.url), gatewayID: harness.gatewayID,
                                              sensors: 4, rate: 1000, count: 600)
        options.topicPrefix = "extra"
        let queued = try await SensorSimulator(options: options, logger: harness.logger).run()

        // The filter removed, then another reload, both while cut off.
        try Self.rewriteAgentConfig(harness) { $0.replacingOccurrences(of: extra + "\n", with: "") }
        try await Self.hangUp(agent, harness, until: "configuration reloaded")
        try Self.rewriteAgentConfig(harness) { $0.replacingOccurrences(of: "batch_max_readings: 250", with: "batch_max_readings: 100") }
        try await Self.hangUp(agent, harness, until: "configuration reloaded")

        // Back, through a slow link: the agent unsubscribes at once, and the broker goes on
        // sending what it queued for the filter after its UNSUBACK. A reload meanwhile (it
        // dropped the filter's decoder in attack round 16).
        proxy = try await harness.startProxy(["--bandwidth", "16k"], on: .agentToBroker)
        try await eventually(timeout: .seconds(30), "the agent unsubscribes") { harness.agentLog.contains("unsubscribing from a filter no longer configured") }
        try await Task.sleep(for: .seconds(1))
        #expect(try Self.sinkCount(harness, gateway: harness.gatewayID) < Int64(queued.entries.count), "the queue still drains")
        try Self.rewriteAgentConfig(harness) { $0.replacingOccurrences(of: "batch_max_readings: 100", with: "batch_max_readings: 250") }
        try await Self.hangUp(agent, harness, until: "configuration reloaded")
        let report = try await harness.verifyWhenComplete(queued)
        #expect(report.passed && report.found == queued.entries.count && report.duplicates == 0, "\(report)")
        #expect(try BufferReader(path: harness.dir.file("agent/buffer.sqlite")).quarantineCount() == 0)
        await harness.stop(agent, proxy, aggregator)
    }

    @Test("the aggregator's URL changed by a reload: what waited for the wrong one arrives exactly once")
    func aggregatorURLReloaded() async throws {
        let nowhere = try FreePort.allocate()
        let harness = try await ProcessHarness(gatewayID: "gw-moved", aggregatorSettings: Self.settings,
                                               aggregatorURLs: ["http://127.0.0.1:\(nowhere)"])
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(600, rate: 600).value
        #expect(try Self.sinkCount(harness, gateway: "gw-moved") == 0, "nothing reaches a port where no aggregator listens")
        try Self.rewriteAgentConfig(harness) { $0.replacingOccurrences(of: "http://127.0.0.1:\(nowhere)", with: "http://127.0.0.1:\(harness.httpPort)") }
        try await Self.hangUp(agent, harness, until: "configuration reloaded")
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed && report.missing == 0 && report.duplicates == 0, "\(report)")
        await harness.stop(agent, aggregator)
    }

    @Test("a reload with problems, or changing data_dir, is refused whole: logged, in the fleet view, the agent runs on")
    func refusedReload() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-refuse", aggregatorSettings: Self.settings)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let good = try String(contentsOfFile: harness.dir.file("agent.yaml"), encoding: .utf8)

        // Two problems at once: both named, with their lines.
        try Self.rewriteAgentConfig(harness) { text in
            text.replacingOccurrences(of: "commit_interval_ms: 5", with: "commit_interval_ms: 5\n  max_bytes: 12")
                .replacingOccurrences(of: "format: number", with: "format: numbr")
        }
        try await Self.hangUp(agent, harness, until: "configuration reload refused")
        let refusedLog = harness.agentLog
        #expect(refusedLog.contains("buffer.max_bytes") && refusedLog.contains("mqtt.subscriptions[1].format"), "\(ProcessHarness.tail(harness.dir.file("agent.log")))")
        try await eventually(timeout: .seconds(30), "the fleet view shows the refusal as the gateway's last error") {
            try await harness.gateway()?.lastError.contains("configuration reload refused") == true
        }

        // A key that needs a restart.
        try good.replacingOccurrences(of: "data_dir: \(harness.dir.file("agent"))", with: "data_dir: \(harness.dir.file("elsewhere"))")
            .write(toFile: harness.dir.file("agent.yaml"), atomically: true, encoding: .utf8)
        try await Self.hangUp(agent, harness, until: "keys that need a restart changed")
        try await eventually(timeout: .seconds(30), "the fleet view names data_dir") {
            let lastError = try await harness.gateway()?.lastError ?? ""
            return lastError.contains("data_dir") && lastError.contains("restart")
        }
        #expect(!FileManager.default.fileExists(atPath: harness.dir.file("elsewhere")), "the running configuration stays")

        // Still running on the configuration it had: everything arrives.
        #expect(agent.isRunning)
        let manifest = try await harness.publish(500, rate: 500).value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
    }

    @Test("tributary-agent --check-config: 0 with the settings (secrets redacted), or 1 naming every problem with its line")
    func agentCheckConfig() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let secret = "s3cret-token-0123456789abcdef"
        let tokenFile = try dir.writeSecret("token", secret + "\n")
        let good = """
            gateway_id: gw-check
            data_dir: \(dir.file("data"))
            mqtt:
              broker: mqtt://127.0.0.1:1883
              subscriptions:
                - topic: "sensors/+/+"
                  template: "sensors/{gateway}/{sensor}"
                  format: json
            aggregator:
              url: http://127.0.0.1:8470
              token_file: \(tokenFile)
            """
        try good.write(toFile: dir.file("good.yaml"), atomically: true, encoding: .utf8)
        let agent = try ProcessHarness.executable("tributary-agent")
        let ok = try await ProcessHarness.run(agent, ["--check-config", "--config", dir.file("good.yaml")], in: dir.path)
        #expect(ok.code == 0, "\(ok.output)")
        #expect(ok.output.contains("gateway_id: gw-check") && ok.output.contains("token_file: \(tokenFile)"), "\(ok.output)")
        #expect(!ok.output.contains(secret), "the token never shows: \(ok.output)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("data")), "a check creates nothing")

        // Three problems in three places, each named with its key and line; the missing token
        // file is read (and found missing) too.
        let bad = """
            gateway_id: gw-check
            mqtt:
              broker: mqtt://127.0.0.1:1883
              subscriptions:
                - topic: "sensors/+/+"
                  template: "sensors/{gateway}/{sensr}"
                  format: json
            buffer:
              max_bytes: 12
            aggregator:
              url: http://127.0.0.1:8470
              token_file: \(dir.file("missing-token"))
            loglevel: debug
            """
        try bad.write(toFile: dir.file("bad.yaml"), atomically: true, encoding: .utf8)
        let failed = try await ProcessHarness.run(agent, ["--check-config", "--config", dir.file("bad.yaml")], in: dir.path)
        #expect(failed.code == 1, "\(failed.output)")
        let file = dir.file("bad.yaml")
        for (key, line) in [("mqtt.subscriptions[0].template", 6), ("buffer.max_bytes", 9), ("aggregator.token_file", 12), ("loglevel", 13)] {
            #expect(failed.output.contains("\(file): key '\(key)'") && failed.output.contains("(line \(line))"), "\(key): \(failed.output)")
        }
        #expect(failed.output.contains("has 4 problem(s)"), "\(failed.output)")
    }

    @Test("tributary-aggregator --check-config reads the token files and certificates it names")
    func aggregatorCheckConfig() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let secret = "operator-token-0123456789abcdef"
        let operators = try dir.writeSecret("operators", "alice \(secret)\n")
        let good = """
            listen: 127.0.0.1:8470
            data_dir: \(dir.file("data"))
            admin:
              tokens_file: \(operators)
            """
        try good.write(toFile: dir.file("good.yaml"), atomically: true, encoding: .utf8)
        let aggregator = try ProcessHarness.executable("tributary-aggregator")
        let ok = try await ProcessHarness.run(aggregator, ["--check-config", "--config", dir.file("good.yaml")], in: dir.path)
        #expect(ok.code == 0, "\(ok.output)")
        #expect(ok.output.contains("tokens_file: \(operators)") && !ok.output.contains(secret), "\(ok.output)")

        try "alice short\n".write(toFile: dir.file("bad-operators"), atomically: true, encoding: .utf8)
        chmod(dir.file("bad-operators"), 0o600)
        let bad = """
            listen: nowhere
            data_dir: \(dir.file("data"))
            admin:
              tokens_file: \(dir.file("bad-operators"))
            limits:
              max_body_bytes: 1
            tls:
              cert_file: \(dir.file("missing.pem"))
              key_file: \(dir.file("missing.key"))
            """
        try bad.write(toFile: dir.file("bad.yaml"), atomically: true, encoding: .utf8)
        let failed = try await ProcessHarness.run(aggregator, ["--check-config", "--config", dir.file("bad.yaml")], in: dir.path)
        #expect(failed.code == 1, "\(failed.output)")
        #expect(failed.output.contains("key 'listen'"), "\(failed.output)")
        #expect(failed.output.contains("key 'limits.max_body_bytes'") && failed.output.contains("(line 6)"), "\(failed.output)")
        #expect(failed.output.contains("key 'tls.cert_file'") && failed.output.contains("(line 8)"), "\(failed.output)")
        #expect(failed.output.contains("has 3 problem(s)"), "\(failed.output)")
    }

    /// `openssl s_client` to the aggregator, its stdin empty: the handshake, the server's
    /// certificate, then it ends.
    static func handshake(_ port: Int, ca: String, in dir: TemporaryDirectory) async throws -> String {
        try await ProcessHarness.run("/bin/sh", ["-c", "openssl s_client -connect 127.0.0.1:\(port) -CAfile \(ca) </dev/null"], in: dir.path).output
    }

    /// The first line of a PEM certificate's body: enough to tell two certificates apart.
    static func fingerprintLine(_ pem: String) throws -> String {
        let text = try String(contentsOfFile: pem, encoding: .utf8)
        return String(text.split(separator: "\n").dropFirst().first ?? "")
    }

    @Test("aggregator SIGHUP: a new certificate for new connections while an open one is kept; a listen change is refused")
    func aggregatorReload() async throws {
        let dir = try TemporaryDirectory()
        let pki = try await TestPKI(in: dir)
        let first = try await pki.server("first"), second = try await pki.server("second")
        func install(_ issued: TestPKI.Issued) throws {
            for (from, to) in [(issued.certificate, dir.file("live.pem")), (issued.key, dir.file("live.key"))] {
                try? FileManager.default.removeItem(atPath: to)
                try FileManager.default.copyItem(atPath: from, toPath: to)
                chmod(to, 0o600)
            }
        }
        try install(first)
        let harness = try await ProcessHarness(gatewayID: "gw-agg-reload", aggregatorConfig: [
            "tls:", "  cert_file: \(dir.file("live.pem"))", "  key_file: \(dir.file("live.key"))",
            "audit:", "  retention_days: 30", "limits:", "  max_gateways: 100",
        ], directory: dir)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let aggregatorLog = { (try? String(contentsOfFile: dir.file("aggregator.log"), encoding: .utf8)) ?? "" }
        try await eventually(timeout: .seconds(30), "the aggregator listens for SIGHUP") { aggregatorLog().contains("reloading the configuration on SIGHUP") }
        #expect(try await Self.handshake(harness.httpPort, ca: pki.caFile, in: dir).contains(try Self.fingerprintLine(first.certificate)))

        // A connection held open across the reload: its request goes on the fifo afterwards.
        let fifo = dir.file("held.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let held = try ChildProcess(executable: "/bin/sh", arguments: [
            "-c", "openssl s_client -connect 127.0.0.1:\(harness.httpPort) -CAfile \(pki.caFile) -ign_eof < \(fifo)",
        ], logFile: dir.file("held.out"))
        let writer = open(fifo, O_WRONLY)
        #expect(writer >= 0)
        let heldOut = { (try? String(contentsOfFile: dir.file("held.out"), encoding: .utf8)) ?? "" }
        try await eventually(timeout: .seconds(30), "the held connection is up") { heldOut().contains("Verify return code: 0") }

        // New certificate, new limits and retention: reloaded.
        try install(second)
        let yaml = try String(contentsOfFile: dir.file("aggregator.yaml"), encoding: .utf8)
        try yaml.replacingOccurrences(of: "retention_days: 30", with: "retention_days: 7")
            .replacingOccurrences(of: "max_gateways: 100", with: "max_gateways: 200")
            .write(toFile: dir.file("aggregator.yaml"), atomically: true, encoding: .utf8)
        var before = aggregatorLog().components(separatedBy: "configuration reloaded").count
        #expect(kill(aggregator.pid, SIGHUP) == 0)
        try await eventually(timeout: .seconds(30), "the aggregator reloads") {
            aggregatorLog().components(separatedBy: "configuration reloaded").count > before
        }
        #expect(aggregatorLog().contains("max_gateways=200") || aggregatorLog().contains("\"max_gateways\":\"200\""), "\(aggregatorLog())")
        let fresh = try await Self.handshake(harness.httpPort, ca: pki.caFile, in: dir)
        #expect(fresh.contains(try Self.fingerprintLine(second.certificate)), "a new connection gets the new certificate: \(fresh)")

        // The held connection still answers, on the certificate it began with.
        let request = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        #expect(write(writer, request, request.count) == request.count)
        try await eventually(timeout: .seconds(30), "the held connection answers") { heldOut().contains("HTTP/1.1 200") }
        close(writer)
        _ = await held.wait()
        #expect(heldOut().contains(try Self.fingerprintLine(first.certificate)))

        // A key that needs a restart: refused, named, and the aggregator serves on.
        try String(contentsOfFile: dir.file("aggregator.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "listen: 127.0.0.1:\(harness.httpPort)", with: "listen: 127.0.0.1:1")
            .write(toFile: dir.file("aggregator.yaml"), atomically: true, encoding: .utf8)
        before = aggregatorLog().components(separatedBy: "configuration reload refused").count
        #expect(kill(aggregator.pid, SIGHUP) == 0)
        try await eventually(timeout: .seconds(30), "the aggregator refuses the reload") {
            aggregatorLog().components(separatedBy: "configuration reload refused").count > before
        }
        #expect(aggregatorLog().contains("listen cannot change without a restart"), "\(aggregatorLog())")
        #expect(aggregator.isRunning)
        #expect(try await Self.handshake(harness.httpPort, ca: pki.caFile, in: dir).contains(try Self.fingerprintLine(second.certificate)))
        await harness.stop(aggregator)
    }
}
