import Foundation
import Testing
import TributarySimulator
import TributaryTesting

/// The real executables as an operator runs them: separate processes, stopped with SIGTERM.
@Suite("executables", .serialized)
struct ExecutableTests {
    @Test("SIGTERM stops agent and aggregator with exit 0 and loses nothing")
    func gracefulStops() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-exe", aggregatorSettings: ["batch_max_age_ms: 200"])
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let publishing = try harness.publish(2000, rate: 500)
        try await Task.sleep(for: .seconds(1))
        #expect(ProcessHarness.exitCode(await agent.stop(signal: SIGTERM)) == 0, "the agent exits 0 on SIGTERM")
        agent = try await harness.startAgent()
        let manifest = try await publishing.value

        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        #expect(ProcessHarness.exitCode(await agent.stop(signal: SIGTERM)) == 0)
        #expect(ProcessHarness.exitCode(await aggregator.stop(signal: SIGTERM)) == 0, "the aggregator exits 0 on SIGTERM")
        await harness.broker.stop()
        #expect(harness.agentLog.components(separatedBy: "everything received is committed").count == 3,
                "both agent runs committed before exit")
    }

    /// A stopping agent closed its MQTT socket with PUBACKs still queued (libmosquitto takes a
    /// PUBLISH read after `mosquitto_disconnect` as a protocol error and drops the socket), so
    /// the broker sent those messages again after the restart: 10 to 25 readings stored twice
    /// per run here. Now the PUBACKs are written, then the DISCONNECT, and the socket is drained
    /// before it is closed (a close with unread data is a reset, and then the broker drops what
    /// it had not read yet: 15 to 95 more doubled, one run in two).
    @Test("SIGTERM five times mid-stream at 2,000 messages a second: nothing lost, nothing doubled")
    func repeatedGracefulStops() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-stops", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let publishing = try harness.publish(12_000, rate: 2000)
        for _ in 0..<5 {
            try await Task.sleep(for: .milliseconds(700))
            #expect(ProcessHarness.exitCode(await agent.stop(signal: SIGTERM)) == 0)
            agent = try await harness.startAgent(waitForSubscription: false)
        }
        let report = try await harness.verifyWhenComplete(try await publishing.value)
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
        // Whether a stop doubles anything depends on what was in flight at that instant; how
        // the broker saw each stop does not. A stop that reaches it as a reset ('closed its
        // connection', 'Broken pipe') can leave PUBACKs unread, and 2 stops in 5 did so before
        // the agent drained its socket before closing it.
        let unclean = harness.broker.log.split(separator: "\n").filter {
            $0.contains("tributary-gw-stops") && ($0.contains("closed its connection") || $0.contains("Broken pipe"))
        }
        #expect(unclean.isEmpty, "\(unclean)")
    }

    /// A broker stalled (on its disk, say) while the agent stops: the agent's 2 s to write its
    /// PUBACKs and DISCONNECT run out, the broker later finds the socket closed with them unread
    /// and sends those messages again. The restarted agent used to store them again (259
    /// duplicates of 76,000 in an attack); the stop now leaves its redelivery window in the buffer.
    @Test("SIGTERM while the broker is stalled for 3 s, four times: nothing lost, nothing doubled")
    func stopsWhileTheBrokerIsStalled() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-stall", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        // Publishing lasts past the last stop (each takes about 3.7 s), so every stop has messages in flight.
        let publishing = try harness.publish(27_000, rate: 1500)
        for _ in 0..<4 {
            try await Task.sleep(for: .milliseconds(700))
            harness.broker.pause(true)
            let stopped = await agent.stop(signal: SIGTERM)
            try await Task.sleep(for: .seconds(1))
            harness.broker.pause(false)
            #expect(ProcessHarness.exitCode(stopped) == 0)
            agent = try await harness.startAgent(waitForSubscription: false)
        }
        let report = try await harness.verifyWhenComplete(try await publishing.value)
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
    }

    @Test("a bad configuration file ends the agent with one line naming the key and the file")
    func badConfig() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try "gateway_id: gw\nmqtt:\n  subscriptons: []\n".write(toFile: dir.file("bad.yaml"), atomically: true, encoding: .utf8)
        let agent = try ChildProcess(executable: try ProcessHarness.executable("tributary-agent"),
                                     arguments: ["--config", dir.file("bad.yaml")], logFile: dir.file("out.log"))
        #expect(ProcessHarness.exitCode(await agent.wait()) == 1)
        let output = try String(contentsOfFile: dir.file("out.log"), encoding: .utf8)
        #expect(output.contains("\(dir.file("bad.yaml")): key 'mqtt.subscriptons': unknown key"), "\(output)")
        #expect(output.split(separator: "\n").count == 1, "one clear line: \(output)")
    }

    /// Issue 23, item 7: a second agent started by hand on the service's data dir. Both sealed
    /// and sent the same buffer's batches: 35 duplicates of 12,725, and one agent trapped.
    @Test("a second agent on the same data dir exits at once naming the PID that holds it; nothing doubles")
    func secondAgentOnOneDataDir() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-twice", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let publishing = try harness.publish(3000, rate: 600)
        try await Task.sleep(for: .seconds(1))
        let second = try ChildProcess(executable: try ProcessHarness.executable("tributary-agent"),
                                      arguments: ["--config", harness.dir.file("agent.yaml")], logFile: harness.dir.file("second.log"))
        // A bound on a hang, not a speed.
        try? await eventually(timeout: .seconds(20), "the second agent exits") { !second.isRunning }
        let status = second.exitStatus
        if status == nil { await second.stop(signal: SIGKILL) }
        let output = (try? String(contentsOfFile: harness.dir.file("second.log"), encoding: .utf8)) ?? ""
        #expect(status.map(ProcessHarness.exitCode) == 1, "the second agent still ran: \(output)")
        #expect(output.contains("another tributary-agent (PID \(agent.pid)) is using data_dir"), "\(output)")
        let report = try await harness.verifyWhenComplete(try await publishing.value)
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
    }
}
