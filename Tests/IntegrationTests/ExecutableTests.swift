import Foundation
import Logging
import Testing
import TributaryMQTT
import TributarySimulator
import TributaryTesting

/// The real executables as an operator runs them: separate processes, stopped with SIGTERM.
@Suite("executables", .serialized)
struct ExecutableTests {
    /// Where SwiftPM put the executables: beside the test bundle.
    static var binDirectory: String {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" && !FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("tributary-agent").path) {
            url.deleteLastPathComponent()
        }
        return url.path
    }

    static func executable(_ name: String) throws -> String {
        let path = binDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestingError("\(name) is not built next to the tests; run `swift build --build-tests` first")
        }
        return path
    }

    @Test("SIGTERM stops agent and aggregator with exit 0 and loses nothing")
    func gracefulStops() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.file("broker"), withIntermediateDirectories: true)
        let broker = try await MosquittoBroker(directory: dir.file("broker"))
        let httpPort = try FreePort.allocate()
        let aggregator = try ChildProcess(
            executable: try Self.executable("tributary-aggregator"),
            arguments: ["--listen", "127.0.0.1:\(httpPort)", "--data-dir", dir.file("aggregator")],
            logFile: dir.file("aggregator.log"))
        try await FreePort.waitUntilListening(httpPort)
        try """
            gateway_id: gw-exe
            data_dir: \(dir.file("agent"))
            mqtt:
              broker: \(broker.url)
              subscriptions:
            \(SensorSimulator.subscriptionYAML())
            aggregator:
              url: http://127.0.0.1:\(httpPort)
              batch_max_age_ms: 200
            """.write(toFile: dir.file("agent.yaml"), atomically: true, encoding: .utf8)

        func startAgent() async throws -> ChildProcess {
            let before = (try? String(contentsOfFile: dir.file("agent.log"), encoding: .utf8))?.components(separatedBy: "subscriptions confirmed").count ?? 1
            let agent = try ChildProcess(executable: try Self.executable("tributary-agent"),
                                         arguments: ["--config", dir.file("agent.yaml")], logFile: dir.file("agent.log"))
            try await eventually(timeout: .seconds(30), "the agent subscribes") {
                let log = (try? String(contentsOfFile: dir.file("agent.log"), encoding: .utf8)) ?? ""
                return log.components(separatedBy: "subscriptions confirmed").count > before
            }
            return agent
        }

        var agent = try await startAgent()
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let simulator = SensorSimulator(options: .init(broker: try MQTTBroker(url: broker.url), gatewayID: "gw-exe",
                                                       sensors: 10, rate: 500, count: 2000), logger: logger)
        let publishing = Task { try await simulator.run() }
        try await Task.sleep(for: .seconds(1))
        #expect(Self.exitCode(await agent.stop(signal: SIGTERM)) == 0, "the agent exits 0 on SIGTERM")
        agent = try await startAgent()
        let manifest = try await publishing.value

        let sink = "sqlite:" + dir.file("aggregator/sink.sqlite")
        try await eventually("the sink holds every reading") {
            try Verifier.verify(manifest, sink: sink).found >= manifest.entries.count
        }
        let report = try Verifier.verify(manifest, sink: sink)
        #expect(report.passed, "\(report)")
        #expect(Self.exitCode(await agent.stop(signal: SIGTERM)) == 0)
        #expect(Self.exitCode(await aggregator.stop(signal: SIGTERM)) == 0, "the aggregator exits 0 on SIGTERM")
        await broker.stop()
        let agentLog = try String(contentsOfFile: dir.file("agent.log"), encoding: .utf8)
        #expect(agentLog.components(separatedBy: "everything received is committed").count == 3, "both agent runs committed before exit")
    }

    @Test("a bad configuration file ends the agent with one line naming the key and the file")
    func badConfig() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try "gateway_id: gw\nmqtt:\n  subscriptons: []\n".write(toFile: dir.file("bad.yaml"), atomically: true, encoding: .utf8)
        let agent = try ChildProcess(executable: try Self.executable("tributary-agent"),
                                     arguments: ["--config", dir.file("bad.yaml")], logFile: dir.file("out.log"))
        #expect(Self.exitCode(await agent.wait()) == 1)
        let output = try String(contentsOfFile: dir.file("out.log"), encoding: .utf8)
        #expect(output.contains("\(dir.file("bad.yaml")): key 'mqtt.subscriptons': unknown key"), "\(output)")
        #expect(output.split(separator: "\n").count == 1, "one clear line: \(output)")
    }

    /// The exit code of a wait status, or -1 when the process died of a signal.
    static func exitCode(_ status: Int32) -> Int32 {
        status & 0x7F == 0 ? (status >> 8) & 0xFF : -1
    }
}
