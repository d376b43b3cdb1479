import Foundation
import Logging
import Synchronization
import TributaryCore
import TributaryMQTT

/// Publishes realistic JSON readings for a set of sensors to a real broker at QoS 1 and keeps
/// a manifest of exactly what the broker acknowledged.
///
/// Each message looks like a common smart-plug / environment sensor:
/// `{"ts":1700000000123,"temperature":21.53,"humidity":40.2,"ENERGY":{"Power":12.5,"Total":1234},"relay":true}`
/// on topic `<prefix>/<gateway>/<sensor>`: five readings per message.
public struct SensorSimulator: Sendable {
    public struct Options: Sendable {
        public var broker: MQTTBroker
        public var gatewayID: String
        public var sensors: Int
        /// Messages per second, all sensors together.
        public var rate: Double
        /// Stop after this many messages...
        public var count: Int?
        /// ...or after this long.
        public var duration: Duration?
        public var topicPrefix = "sensors"
        public var seed: UInt64 = 1
        /// How many publishes may await their PUBACK at once.
        public var maxPending = 1000

        public init(broker: MQTTBroker, gatewayID: String, sensors: Int, rate: Double, count: Int? = nil, duration: Duration? = nil) {
            self.broker = broker
            self.gatewayID = gatewayID
            self.sensors = sensors
            self.rate = rate
            self.count = count
            self.duration = duration
        }
    }

    public struct SimulatorError: Error, CustomStringConvertible {
        public let description: String
    }

    public let options: Options
    private let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// The agent config subscription matching what this simulator publishes.
    public static func subscriptionYAML(prefix: String = "sensors") -> String {
        """
              - topic: "\(prefix)/+/+"
                template: "\(prefix)/{gateway}/{sensor}"
                format: json
                time_field: ts
        """
    }

    /// Publishes until the count or duration is reached, waits for every PUBACK, and returns
    /// the manifest. `progress` is called about once a second with (sent, elapsed seconds).
    public func run(progress: @Sendable (Int, Double) -> Void = { _, _ in }) async throws -> Manifest {
        let tracker = PublishTracker()
        var handlers = MQTTClient.Handlers()
        handlers.onPublishAcknowledged = { _ in tracker.acknowledged() }
        handlers.onConnect = { _ in tracker.setConnected(true) }
        handlers.onDisconnect = { _ in tracker.setConnected(false) }
        let clientID = "tributary-sim-\(options.gatewayID)-\(UInt32.random(in: 0...UInt32.max))"
        let client = try MQTTClient(broker: options.broker, options: .init(clientID: clientID, cleanSession: true),
                                    handlers: handlers, logger: logger)
        try client.start()
        defer { client.stop() }
        try await tracker.waitConnected(timeout: .seconds(30), broker: options.broker)

        var generator = SeededGenerator(seed: options.seed)
        var models = (0..<options.sensors).map { SensorModel(index: $0, generator: &generator) }
        var lastTimeMs = [Int64](repeating: 0, count: options.sensors)
        var entries: [Manifest.Entry] = []
        let start = ContinuousClock.now
        let interval = 1.0 / max(options.rate, 0.001)
        var sent = 0
        var lastProgress = start
        while true {
            if let count = options.count, sent >= count { break }
            let elapsed = ContinuousClock.now - start
            if let duration = options.duration, elapsed >= duration { break }
            // Pace against the schedule, not the previous send, so the rate holds on average.
            let due = start + .seconds(Double(sent) * interval)
            if due > ContinuousClock.now { try await Task.sleep(until: due, clock: .continuous) }
            while tracker.pending > options.maxPending { try await Task.sleep(for: .milliseconds(2)) }

            let index = sent % options.sensors
            let sensorID = String(format: "sensor-%04d", index)
            // A device stamps its readings in strictly increasing time. Without that, a sensor
            // published twice in one millisecond (the loop catching up after a stall) could send
            // a byte-identical payload, which the agent rightly takes for a QoS 1 redelivery
            // while the manifest counted it twice: "missing" readings that were never sent apart.
            let timeMs = max(WallClock.nowMs(), lastTimeMs[index] + 1)
            lastTimeMs[index] = timeMs
            let (payload, readings) = models[index].next(timeMs: timeMs, generator: &generator)
            let topic = "\(options.topicPrefix)/\(options.gatewayID)/\(sensorID)"
            tracker.published()
            do {
                try client.publish(topic: topic, payload: Array(payload.utf8), qos: 1)
            } catch {
                throw SimulatorError(description: "publish to \(options.broker) failed after \(sent) messages: \(error)")
            }
            for (metric, value) in readings {
                entries.append(.init(gatewayID: options.gatewayID, sensorID: sensorID, metric: metric, timeMs: timeMs, value: value))
            }
            sent += 1
            if ContinuousClock.now - lastProgress >= .seconds(1) {
                lastProgress = ContinuousClock.now
                progress(sent, (ContinuousClock.now - start).inSeconds)
            }
        }
        // Every QoS 1 publish must be acknowledged by the broker before the manifest is true.
        let deadline = ContinuousClock.now + .seconds(60)
        while tracker.pending > 0 {
            guard ContinuousClock.now < deadline else {
                throw SimulatorError(description: "\(tracker.pending) of \(sent) publishes were not acknowledged by \(options.broker) within 60 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        progress(sent, (ContinuousClock.now - start).inSeconds)
        return Manifest(messagesPublished: sent, entries: entries)
    }
}

/// Counts publishes and their PUBACKs (called from the MQTT thread).
final class PublishTracker: Sendable {
    private let state = Mutex((published: 0, acknowledged: 0, connected: false))

    func published() { state.withLock { $0.published += 1 } }
    func acknowledged() { state.withLock { $0.acknowledged += 1 } }
    func setConnected(_ value: Bool) { state.withLock { $0.connected = value } }
    var pending: Int { state.withLock { $0.published - $0.acknowledged } }

    func waitConnected(timeout: Duration, broker: MQTTBroker) async throws {
        let deadline = ContinuousClock.now + timeout
        while !state.withLock({ $0.connected }) {
            guard ContinuousClock.now < deadline else {
                throw SensorSimulator.SimulatorError(description: "cannot connect to the broker at \(broker) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// One simulated device: a diurnal temperature with noise, a humidity random walk,
/// a power draw with an energy counter, and a relay that sometimes toggles.
struct SensorModel {
    var temperature: Double
    var humidity: Double
    var energyTotal: Int64
    var relay: Bool

    init(index: Int, generator: inout SeededGenerator) {
        temperature = 18 + Double.random(in: 0..<6, using: &generator)
        humidity = 35 + Double.random(in: 0..<20, using: &generator)
        energyTotal = Int64.random(in: 0..<10_000, using: &generator)
        relay = Bool.random(using: &generator)
    }

    mutating func next(timeMs: Int64, generator: inout SeededGenerator) -> (String, [(String, ReadingValue)]) {
        let dayFraction = Double(timeMs % 86_400_000) / 86_400_000
        let temp = round2(temperature + 3 * sin(2 * .pi * dayFraction) + Double.random(in: -0.2...0.2, using: &generator))
        humidity = min(95, max(5, humidity + Double.random(in: -0.5...0.5, using: &generator)))
        let hum = round2(humidity)
        let power = relay ? round2(40 + Double.random(in: -5...5, using: &generator)) : 0
        if relay { energyTotal += 1 }
        if Int.random(in: 0..<50, using: &generator) == 0 { relay.toggle() }
        let payload = "{\"ts\":\(timeMs),\"temperature\":\(temp),\"humidity\":\(hum),\"ENERGY\":{\"Power\":\(power),\"Total\":\(energyTotal)},\"relay\":\(relay)}"
        return (payload, [
            ("temperature", .double(temp)), ("humidity", .double(hum)),
            ("ENERGY.Power", .double(power)), ("ENERGY.Total", .integer(energyTotal)), ("relay", .boolean(relay)),
        ])
    }

    private func round2(_ v: Double) -> Double { (v * 100).rounded() / 100 }
}

/// SplitMix64: a small, seedable generator so a seed reproduces a run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
