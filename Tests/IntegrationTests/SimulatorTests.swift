import Foundation
import Logging
import Testing
import TributaryMQTT
import TributarySimulator
import TributaryTesting

@Suite("sensor simulator")
struct SimulatorTests {
    /// Far above what the loop can pace, so it publishes in bursts: each sensor's readings still
    /// carry strictly increasing times. Two messages of one sensor in one millisecond could
    /// otherwise be byte-identical, which the agent rightly takes for a QoS 1 redelivery, while
    /// the manifest counted both (this made conservation tests fail now and then in CI).
    @Test("a burst never stamps one sensor twice with the same time")
    func timesStrictlyIncreasePerSensor() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let broker = try await MosquittoBroker(directory: dir.path)
        defer { Task { await broker.stop() } }
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let simulator = SensorSimulator(options: .init(broker: try MQTTBroker(url: broker.url), gatewayID: "gw-burst",
                                                       sensors: 2, rate: 1_000_000, count: 4000), logger: logger)
        let manifest = try await simulator.run()
        var last: [String: Int64] = [:]
        for entry in manifest.entries where entry.metric == "temperature" {
            #expect(entry.timeMs > last[entry.sensorID, default: 0], "\(entry.sensorID) at \(entry.timeMs)")
            last[entry.sensorID] = entry.timeMs
        }
        #expect(last.count == 2)
    }
}
