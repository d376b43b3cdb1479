import Foundation
import Testing
import TributaryBuffer
import TributaryMQTT
import TributarySimulator
import TributaryTesting

/// `tributary-agent quarantine` and `tributary-agent set-aside` as an operator runs them: the
/// real executables beside a real broker, aggregator (SQLite sink) and agent, with the agent
/// stopped and running.
@Suite("quarantine and set-aside tools", .serialized)
struct OperatorToolTests {
    /// A template one level too deep for the topics the sensors publish on: every payload is
    /// quarantined ("topic ... does not match template ...").
    static let brokenTemplate = "plant/{gateway}/{sensor}/{metric}"
    static let fixedTemplate = "plant/{gateway}/{sensor}"

    /// The harness's agent configuration with a `plant/#` subscription using `template`.
    static func useTemplate(_ template: String, in harness: ProcessHarness) throws {
        let path = harness.dir.file("agent.yaml")
        var yaml = try String(contentsOfFile: path, encoding: .utf8)
        if yaml.contains(brokenTemplate) {
            yaml = yaml.replacingOccurrences(of: brokenTemplate, with: template)
        } else {
            yaml = yaml.replacingOccurrences(of: "  subscriptions:\n", with: """
                  subscriptions:
                      - topic: "plant/#"
                        template: "\(template)"
                        format: json
                        time_field: ts

                """)
        }
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Runs `tributary-agent ARGS --config agent.yaml`; its exit code and output.
    static func tool(_ harness: ProcessHarness, _ arguments: [String]) async throws -> (code: Int32, output: String) {
        try await ProcessHarness.run(try ProcessHarness.executable("tributary-agent"),
                                     arguments + ["--config", harness.dir.file("agent.yaml")], in: harness.dir.path)
    }

    /// The JSON a tool printed.
    static func json(_ output: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(output.utf8))
    }

    static func publishPlant(_ harness: ProcessHarness, count: Int) async throws -> Manifest {
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: harness.broker.url), gatewayID: harness.gatewayID,
                                              sensors: 4, rate: 200, count: count)
        options.topicPrefix = "plant"
        // Some messages published twice with the same bytes: both copies are quarantined, and a
        // replay must store one.
        options.faults.duplicateShare = 0.1
        return try await SensorSimulator(options: options, logger: harness.logger).run()
    }

    func held(_ harness: ProcessHarness) throws -> Int64 {
        try BufferReader(path: harness.dir.file("agent/buffer.sqlite")).quarantineCount()
    }

    @Test("a topic that does not fit its template is quarantined; after the fix, replay (agent stopped, then running) brings every reading to the sink once; again, nothing more")
    func replayAfterATemplateFix() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-replay", aggregatorSettings: ["batch_max_age_ms: 200", "heartbeat_seconds: 1"])
        defer { harness.dir.remove() }
        try Self.useTemplate(Self.brokenTemplate, in: harness)
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let manifest = try await Self.publishPlant(harness, count: 200)
        let copies = Int64(manifest.messagesPublished)  // both copies of a duplicated message
        try await eventually("every payload is quarantined") { try held(harness) == copies }

        // The tools read beside the running agent.
        let list = try await Self.tool(harness, ["quarantine", "list", "--json", "--limit", "0"])
        #expect(list.code == 0, "\(list.output)")
        let listed = try #require(try Self.json(list.output) as? [[String: Any]])
        #expect(listed.count == Int(copies))
        #expect(listed.allSatisfy { ($0["reason"] as? String)?.contains("does not fit template") == true }, "\(listed.first ?? [:])")
        let firstID = try #require(listed.first?["id"] as? Int)
        let show = try await Self.tool(harness, ["quarantine", "show", String(firstID), "--json"])
        #expect(show.code == 0, "\(show.output)")
        let shown = try #require(try Self.json(show.output) as? [String: Any])
        #expect((shown["payload_text"] as? String)?.contains("\"ts\"") == true, "\(shown)")
        let table = try await Self.tool(harness, ["quarantine", "list", "--topic", "plant/+/sensor-0001", "--limit", "3"])
        #expect(table.code == 0 && table.output.contains("\(copies) payload(s) in quarantine, 3 shown"), "\(table.output)")

        // Replay with the running agent still on the broken template: all still fail, none move.
        let early = try await Self.tool(harness, ["quarantine", "replay", "--json"])
        #expect(early.code == 0, "\(early.output)")
        let earlySummary = try #require(try Self.json(early.output) as? [String: Any])
        #expect(earlySummary["examined"] as? Int == Int(copies) && earlySummary["replayed"] as? Int == 0
                && earlySummary["still_quarantined"] as? Int == Int(copies), "\(earlySummary)")
        #expect(try held(harness) == copies)

        // The template fixed; the agent stopped: the tool replays one sensor itself.
        #expect(ProcessHarness.exitCode(await agent.stop(signal: SIGTERM)) == 0)
        try Self.useTemplate(Self.fixedTemplate, in: harness)
        let offline = try await Self.tool(harness, ["quarantine", "replay", "--topic", "plant/+/sensor-0000"])
        #expect(offline.code == 0 && offline.output.contains("replayed by this tool (no agent running)"), "\(offline.output)")
        let afterOffline = try held(harness)
        #expect(afterOffline > 0 && afterOffline < copies, "one sensor's payloads left the quarantine")

        // The agent started with the fixed template: it replays the rest itself, over its socket,
        // while other sensors' live traffic flows through the same committer.
        agent = try await harness.startAgent()
        let live = try harness.publish(1500, rate: 500)
        try await Task.sleep(for: .milliseconds(500))
        let online = try await Self.tool(harness, ["quarantine", "replay", "--json"])
        #expect(online.code == 0, "\(online.output)")
        let summary = try #require(try Self.json(online.output) as? [String: Any])
        #expect(summary["examined"] as? Int == Int(afterOffline) && summary["still_quarantined"] as? Int == 0, "\(summary)")
        #expect(try held(harness) == 0)
        #expect(harness.agentLog.contains("quarantine replayed"))

        var everything = manifest
        everything.append(try await live.value)
        let report = try await harness.verifyWhenComplete(everything)
        #expect(report.passed && report.found == everything.entries.count && report.duplicates == 0, "\(report)")

        // Again: nothing is left, nothing doubles.
        let again = try await Self.tool(harness, ["quarantine", "replay", "--json"])
        let againSummary = try #require(try Self.json(again.output) as? [String: Any])
        #expect(again.code == 0 && againSummary["examined"] as? Int == 0, "\(again.output)")
        let settled = try await harness.verifyWhenSettled(everything)
        #expect(settled.passed && settled.duplicates == 0, "\(settled)")

        // Counters: every payload quarantined once; the redelivered copies counted as such; the
        // readings received (ingested) and synced; the fleet view says so, with no reasons held.
        let reader = try BufferReader(path: harness.dir.file("agent/buffer.sqlite"))
        #expect(try reader.total(.quarantined) == copies)
        #expect(try reader.total(.quarantineReplayed) == copies)
        #expect(try reader.total(.redeliveries) == Int64(manifest.duplicatesPublished))
        #expect(try reader.total(.ingested) == Int64(everything.entries.count))
        try await eventually("the fleet view shows the replayed readings synced") {
            let gateway = try await harness.gateway()
            return gateway?.acknowledgedTotal == UInt64(everything.entries.count) && (gateway?.quarantineReasons ?? []).isEmpty
        }
        let gateway = try #require(try await harness.gateway())
        #expect(gateway.quarantinedTotal == UInt64(copies) && gateway.readingsSynced == UInt64(everything.entries.count), "\(gateway)")
        await harness.stop(agent, aggregator)
    }

    @Test("export and purge: JSON Lines of what is held; purge by age, with the agent running and stopped; errors exit 1")
    func exportAndPurge() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-purge", aggregatorSettings: ["batch_max_age_ms: 200"])
        defer { harness.dir.remove() }
        try Self.useTemplate(Self.brokenTemplate, in: harness)
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let manifest = try await Self.publishPlant(harness, count: 60)
        let copies = Int64(manifest.messagesPublished)  // both copies of a duplicated message
        try await eventually("every payload is quarantined") { try held(harness) == copies }

        let exported = try await Self.tool(harness, ["quarantine", "export", "--output", harness.dir.file("export.jsonl")])
        #expect(exported.code == 0, "\(exported.output)")
        let lines = try String(contentsOfFile: harness.dir.file("export.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == Int(copies))
        let one = try #require(try Self.json(String(lines[0])) as? [String: Any])
        #expect(one["payload_base64"] is String && one["topic"] as? String != nil && one["reason"] is String, "\(one)")
        let mode = try FileManager.default.attributesOfItem(atPath: harness.dir.file("export.jsonl"))[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let sensor1 = try await Self.tool(harness, ["quarantine", "export", "--topic", "plant/+/sensor-0001", "--since", "1h"])
        #expect(sensor1.code == 0 && !sensor1.output.isEmpty && sensor1.output.split(separator: "\n").allSatisfy { $0.contains("sensor-0001") })

        // Nothing is a day old: nothing purged. Then one sensor's, by the running agent.
        let none = try await Self.tool(harness, ["quarantine", "purge", "--older-than", "1d", "--json"])
        #expect(try none.code == 0 && (Self.json(none.output) as? [String: Int])?["purged"] == 0, "\(none.output)")
        let some = try await Self.tool(harness, ["quarantine", "purge", "--older-than", "0s", "--topic", "plant/+/sensor-0001"])
        #expect(some.code == 0 && some.output.contains("by the running agent"), "\(some.output)")
        let afterSome = try held(harness)
        #expect(afterSome < copies && afterSome > 0)

        // The rest with the agent stopped.
        #expect(ProcessHarness.exitCode(await agent.stop(signal: SIGTERM)) == 0)
        let rest = try await Self.tool(harness, ["quarantine", "purge", "--older-than", "0s", "--json"])
        #expect(try rest.code == 0 && (Self.json(rest.output) as? [String: Int])?["purged"] == Int(afterSome), "\(rest.output)")
        #expect(try held(harness) == 0)
        let reader = try BufferReader(path: harness.dir.file("agent/buffer.sqlite"))
        #expect(try reader.total(.quarantinePurged) == copies && reader.total(.quarantined) == copies)

        // Errors: one line, exit 1.
        let unknown = try await Self.tool(harness, ["quarantine", "show", "999999"])
        #expect(unknown.code == 1 && unknown.output.contains("no payload with id 999999"), "\(unknown.output)")
        let badAge = try await Self.tool(harness, ["quarantine", "purge", "--older-than", "soon"])
        #expect(badAge.code == 1 && badAge.output.contains("--older-than 'soon' is not a duration"), "\(badAge.output)")
        let noBuffer = try await ProcessHarness.run(try ProcessHarness.executable("tributary-agent"),
                                                    ["quarantine", "list", "--data-dir", harness.dir.file("nowhere")], in: harness.dir.path)
        #expect(noBuffer.code == 1 && noBuffer.output.contains("no buffer file at \(harness.dir.file("nowhere"))/buffer.sqlite"), "\(noBuffer.output)")
        #expect(noBuffer.output.split(separator: "\n").count == 1, "one line: \(noBuffer.output)")

        // The agent runs on as before: `tributary-agent --config FILE` with no subcommand.
        agent = try await harness.startAgent()
        await harness.stop(agent, aggregator)
    }

    @Test("a set-aside batch retried is delivered exactly once (retried while the agent runs, and while it is stopped); one purged counts as dropped; unknown sequences exit 1")
    func setAsideRetry() async throws {
        // 80 messages are 400 readings: at most 100 a batch makes at least four batches however slow the
        // machine (sealing by age alone made two on a loaded CI runner).
        let harness = try await ProcessHarness(gatewayID: "gw-aside", aggregatorSettings: ["batch_max_age_ms: 200", "batch_max_readings: 100"],
                                               aggregatorConfig: ["limits:", "  max_readings_per_batch: 4"])
        defer { harness.dir.remove() }
        var aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let first = try await harness.publish(80, rate: 100).value
        let reader = { try BufferReader(path: harness.dir.file("agent/buffer.sqlite")) }
        try await eventually("the aggregator refused the batches and the agent set them aside") {
            let batches = try reader().setAsideBatches()
            return batches.reduce(0) { $0 + $1.readingCount } == first.entries.count
        }
        let list = try await Self.tool(harness, ["set-aside", "list", "--json"])
        #expect(list.code == 0, "\(list.output)")
        let listed = try #require(try Self.json(list.output) as? [[String: Any]])
        #expect(!listed.isEmpty && listed.allSatisfy { ($0["last_error"] as? String)?.isEmpty == false }, "\(listed)")
        let sequences = listed.compactMap { $0["sequence"] as? Int }
        try #require(sequences.count >= 3, "\(listed)")
        let show = try await Self.tool(harness, ["set-aside", "show", String(sequences[0]), "--json"])
        let shown = try #require(try Self.json(show.output) as? [String: Any])
        #expect((shown["contents"] as? [Any])?.count == shown["readings"] as? Int, "\(show.output)")
        let export = try await Self.tool(harness, ["set-aside", "export"])
        #expect(export.code == 0 && export.output.split(separator: "\n").count == sequences.count, "\(export.output)")

        // The aggregator's limit lifted (restarted without it).
        await aggregator.stop(signal: SIGTERM)
        try "listen: 127.0.0.1:\(harness.httpPort)\ndata_dir: \(harness.dir.file("aggregator"))\n"
            .write(toFile: harness.dir.file("aggregator.yaml"), atomically: true, encoding: .utf8)
        aggregator = try await harness.startAggregator()

        // The first batch retried by the running agent, the others by the tool while it is stopped.
        let retried = try await Self.tool(harness, ["set-aside", "retry", String(sequences[0])])
        #expect(retried.code == 0 && retried.output.contains("by the running agent"), "\(retried.output)")
        let twice = try await Self.tool(harness, ["set-aside", "retry", String(sequences[0])])
        #expect(twice.code == 1 && twice.output.contains("no batch \(sequences[0]) is set aside"), "\(twice.output)")
        // The last one purged by the running agent: its readings are counted as dropped.
        let purgedReadings = try #require(listed.last?["readings"] as? Int)
        let purge = try await Self.tool(harness, ["set-aside", "purge", String(sequences.last!), "--json"])
        #expect(purge.code == 0 && purge.output.contains("\"readings\" : \(purgedReadings)"), "\(purge.output)")
        #expect(ProcessHarness.exitCode(await agent.stop(signal: SIGTERM)) == 0)
        let rest = try await Self.tool(harness, ["set-aside", "retry", "--all"])
        #expect(rest.code == 0 && rest.output.contains("\(sequences.count - 2) batch(es) back in the send queue, by this tool"), "\(rest.output)")
        agent = try await harness.startAgent()
        let second = try await harness.publish(40, rate: 100).value
        var both = first
        both.append(second)
        try await eventually("the sink holds all but the purged batch") {
            try await Verifier.verify(both, sink: harness.sink).found >= both.entries.count - purgedReadings
        }
        let report = try await harness.verifyWhenSettled(both)
        #expect(report.duplicates == 0 && report.unexpected == 0 && report.missing == purgedReadings
                && report.found == both.entries.count - purgedReadings, "\(report)")
        #expect(try reader().setAsideBatches().isEmpty)
        try await eventually("the fleet view shows no batch set aside, and the purged readings as dropped") {
            let gateway = try await harness.gateway()
            return gateway?.setAsideBatches == 0 && gateway?.droppedTotal == UInt64(purgedReadings)
        }
        await harness.stop(agent, aggregator)
    }
}

/// The control socket against local clients that misbehave: connections held open and silent,
/// and a socket of someone else's where the agent's should be.
@Suite("control socket: hostile local clients", .serialized)
struct ControlSocketHostileTests {
    /// A connection to a unix socket that sends nothing; its descriptor, or -1.
    static func idleConnection(to path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        guard withAddress(of: path, { connect(fd, $0, $1) }) == 0 else { close(fd); return -1 }
        return fd
    }

    /// `body` with the unix socket address of `path` (connect, bind).
    static func withAddress(of path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// True once the other end closed `fd` (a read returns 0, or the connection is reset).
    static func closedByPeer(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pollfd, 1, 0) == 1 else { return false }
        return recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) <= 0
    }

    @Test("idle connections that fill the control socket are closed, and the tool then gets through; a control.sock that is not the agent's is refused, nothing asked")
    func idleConnectionsAndAForeignSocket() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-hostile-socket")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let path = harness.dir.file("agent/control.sock")
        try await eventually("the control socket listens") { FileManager.default.fileExists(atPath: path) }

        // More connections than it serves at once, all silent: the tool waits behind them
        // until the agent closes the idle ones (30 s), then gets its answer. (Before, it waited
        // for as long as they were held.)
        let idle = (0..<20).map { _ in Self.idleConnection(to: path) }
        defer { idle.forEach { if $0 >= 0 { close($0) } } }
        #expect(idle.filter { $0 >= 0 }.count == 20)
        let purge = try await OperatorToolTests.tool(harness, ["quarantine", "purge", "--older-than", "1d", "--json"])
        #expect(purge.code == 0 && (try? OperatorToolTests.json(purge.output) as? [String: Int])?["purged"] == 0, "\(purge.output)")
        try await eventually("the agent closed the silent connections it had taken") {
            idle.filter { $0 >= 0 && Self.closedByPeer($0) }.count >= 16
        }

        // Something else at control.sock: a regular file, then (as root) a socket another user
        // owns. The tool refuses and asks nothing.
        try FileManager.default.moveItem(atPath: path, toPath: path + ".agent")
        try "not a socket".write(toFile: path, atomically: false, encoding: .utf8)
        let file = try await OperatorToolTests.tool(harness, ["set-aside", "retry", "1"])
        #expect(file.code == 1 && file.output.contains("is not the agent's control socket: it is not a socket"), "\(file.output)")
        try FileManager.default.removeItem(atPath: path)
        if geteuid() == 0 {
            let foreign = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let bound = Self.withAddress(of: path) { bind(foreign, $0, $1) }
            #expect(bound == 0 && listen(foreign, 4) == 0 && chown(path, 65534, 65534) == 0)
            defer { close(foreign) }
            let other = try await OperatorToolTests.tool(harness, ["set-aside", "retry", "1"])
            #expect(other.code == 1 && other.output.contains("a socket owned by uid 65534"), "\(other.output)")
            var pollfd = Glibc.pollfd(fd: foreign, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pollfd, 1, 0) == 0, "the tool connected to the foreign socket")
            try FileManager.default.removeItem(atPath: path)
        }
        try FileManager.default.moveItem(atPath: path + ".agent", toPath: path)
        let back = try await OperatorToolTests.tool(harness, ["set-aside", "retry", "1"])
        #expect(back.code == 1 && back.output.contains("no batch 1 is set aside"), "\(back.output)")
        await harness.stop(agent, aggregator)
    }
}
