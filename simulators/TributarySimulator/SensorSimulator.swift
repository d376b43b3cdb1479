import Foundation
import Logging
import Synchronization
import TributaryCore
import TributaryMQTT
import TributaryRuntime
import TributarySparkplug

/// Publishes a gateway's simulated sensors to a real broker at QoS 1, in real time, and keeps
/// a manifest of exactly what the broker acknowledged (see `TrafficGenerator` for what the
/// sensors send, `DeviceKind` for how it looks).
public struct SensorSimulator: Sendable {
    public struct Options: Sendable {
        public var broker: MQTTBroker
        public var gatewayID: String
        public var sensors: Int
        /// Messages per second, all sensors together...
        public var rate: Double
        /// ...or per sensor, when set.
        public var sensorRate: Double?
        /// Each interval varies by up to this share either way (0 to 1).
        public var jitter = 0.0
        /// Periods of faster sending.
        public var burst: Burst?
        /// Sensors take these kinds in turn.
        public var kinds: [DeviceKind] = [.plug]
        /// Stop after this many messages (Sparkplug births included, a duplicate's second copy not)...
        public var count: Int?
        /// ...or after this long.
        public var duration: Duration?
        public var topicPrefix = "sensors"
        public var seed: UInt64 = 1
        /// The run's clock at its start (ms since the epoch); nil for now. Fixed, it makes two
        /// runs' manifests identical.
        public var startMs: Int64?
        public var faults = Faults()
        /// How many publishes may await their PUBACK at once.
        public var maxPending = 1000
        /// Credentials and certificates for a broker that asks for them, as the agent has.
        public var username: String?
        public var password: String?
        public var tls: MQTTClient.TLS?
        /// Sparkplug: the primary host application the edge node waits for. Its births go out
        /// only once `spBv1.0/STATE/<id>` says online; when the host goes offline the node sends
        /// its deaths and publishes nothing until the host is back, then births again.
        /// (Sparkplug 3.0 also has the node disconnect and try its next broker: there is one.)
        public var primaryHostID: String?

        public init(broker: MQTTBroker, gatewayID: String, sensors: Int, rate: Double, count: Int? = nil, duration: Duration? = nil) {
            self.broker = broker
            self.gatewayID = gatewayID
            self.sensors = sensors
            self.rate = rate
            self.count = count
            self.duration = duration
        }
    }

    /// Every `everyMs`, for `lengthMs`, sensors send `factor` times faster.
    public struct Burst: Sendable, Equatable {
        public var factor: Double
        public var lengthMs: Int64
        public var everyMs: Int64
        public init(factor: Double, lengthMs: Int64, everyMs: Int64) {
            self.factor = factor
            self.lengthMs = lengthMs
            self.everyMs = everyMs
        }
    }

    /// Faults injected on request; the manifest records each one.
    public struct Faults: Sendable, Equatable {
        /// Share of messages sent malformed (cut short, not a number, not protobuf).
        public var malformedShare = 0.0
        /// Share of messages published twice with the same bytes.
        public var duplicateShare = 0.0
        /// Share of messages held back and sent after the next one.
        public var outOfOrderShare = 0.0
        /// Each device's clock is off by up to this much either way.
        public var clockSkewMs: Int64 = 0
        /// Share of sensors that fall silent after a few messages.
        public var silentShare = 0.0
        public init() {}
    }

    public struct SimulatorError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Where a run stands, for a progress line.
    public struct Progress: Sendable {
        public var messages: Int
        public var readings: Int
        public var elapsedSeconds: Double
        /// The edge node is waiting for its primary host's STATE online (nothing is published).
        public var waitingForPrimaryHost = false
        public var rate: Double { Double(messages) / max(elapsedSeconds, 0.001) }
    }

    public let options: Options
    private let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// The agent config subscriptions matching what this simulator publishes: the JSON kinds,
    /// plain numbers, and Sparkplug B (group = the prefix).
    public static func subscriptionYAML(prefix: String = "sensors") -> String {
        """
              - topic: "\(prefix)/+/+"
                template: "\(prefix)/{gateway}/{sensor}"
                format: json
                time_field: ts
              - topic: "\(prefix)/+/+/+"
                template: "\(prefix)/{gateway}/{sensor}/{metric}"
                format: number
              - topic: "spBv1.0/\(prefix)/#"
                format: sparkplug
        """
    }

    /// Publishes until the count or duration is reached, waits for every PUBACK, and returns
    /// the manifest. `progress` is called about once a second.
    public func run(progress: @Sendable (Progress) -> Void = { _ in }) async throws -> Manifest {
        let tracker = PublishTracker()
        var handlers = MQTTClient.Handlers()
        handlers.onPublishAcknowledged = { _ in tracker.acknowledged() }
        handlers.onConnect = { _ in tracker.setConnected(true) }
        handlers.onDisconnect = { _ in tracker.setConnected(false) }
        let startMs = options.startMs ?? WallClock.nowMs()
        var traffic = TrafficGenerator(options: options, startMs: startMs)
        let stateTopic = traffic.rebirthTopic == nil ? nil : options.primaryHostID.map { SparkplugHostState.topic(hostID: $0) }
        if let rebirthTopic = traffic.rebirthTopic {
            handlers.onMessage = { message in
                if message.topic == rebirthTopic { tracker.requestRebirth() }
                if message.topic == stateTopic {
                    guard let state = SparkplugHostState(payload: message.payload) else { return }
                    tracker.hostState(state)
                }
            }
        }
        let clientID = "tributary-sim-\(options.gatewayID)-\(UInt32.random(in: 0...UInt32.max))"
        var clientOptions = MQTTClient.Options(clientID: clientID, cleanSession: true)
        clientOptions.username = options.username
        clientOptions.password = options.password
        clientOptions.tls = options.tls
        let client = try MQTTClient(broker: options.broker, options: clientOptions, handlers: handlers, logger: logger)
        if let rebirthTopic = traffic.rebirthTopic { client.addSubscription(rebirthTopic, qos: 0) }
        if let stateTopic { client.addSubscription(stateTopic, qos: 1) }
        try client.start()
        defer { client.stop() }
        try await tracker.waitConnected(timeout: .seconds(30), broker: options.broker)

        var manifest = Manifest(messagesPublished: 0, entries: [])
        manifest.silentSensors = traffic.silentSensors.map { Manifest.Sensor(gatewayID: options.gatewayID, sensorID: $0) }
        func publish(_ message: TrafficGenerator.Message) throws {
            let copies = message.fault == .duplicate ? 2 : 1
            for _ in 0..<copies {
                tracker.published()
                do {
                    try client.publish(topic: message.topic, payload: message.payload, qos: 1)
                } catch {
                    throw SimulatorError(description: "publish to \(options.broker) failed after \(manifest.messagesPublished) messages: \(error)")
                }
                manifest.messagesPublished += 1
            }
            manifest.entries += message.entries
            switch message.fault {
            case .malformed?: manifest.quarantined[message.topic, default: 0] += 1
            case .duplicate?: manifest.duplicatesPublished += 1
            case .outOfOrder?: manifest.outOfOrder += 1
            case nil: break
            }
        }

        let start = ContinuousClock.now
        var sent = 0
        var lastProgress = start
        func report(waiting: Bool = false) {
            progress(Progress(messages: manifest.messagesPublished, readings: manifest.entries.count,
                              elapsedSeconds: (ContinuousClock.now - start).inSeconds, waitingForPrimaryHost: waiting))
        }
        // With a primary host: whether the edge node is in a session (born, not dead) now.
        var inSession = false, waitReported = false
        while true {
            if let count = options.count, sent >= count { break }
            if let duration = options.duration, ContinuousClock.now - start >= duration { break }
            if let stateTopic {
                if !tracker.hostOnline {
                    if inSession {
                        // Sparkplug 3.0: the primary host went offline; end the session.
                        logger.notice("primary host offline; the edge node sends its deaths and waits", metadata: ["topic": "\(stateTopic)"])
                        for death in traffic.deaths() { try publish(death) }
                        traffic.requestRebirth()
                        inSession = false
                    }
                    if !waitReported || ContinuousClock.now - lastProgress >= .seconds(1) {
                        waitReported = true
                        lastProgress = ContinuousClock.now
                        report(waiting: true)
                    }
                    try await Task.sleep(for: .milliseconds(20))
                    continue
                }
                waitReported = false
                if !inSession {
                    logger.notice("primary host online; the edge node births", metadata: ["topic": "\(stateTopic)"])
                    inSession = true
                }
            }
            if tracker.takeRebirthRequest() {
                logger.notice("rebirth requested by the host; births go out next", metadata: ["gateway": "\(options.gatewayID)"])
                traffic.requestRebirth()
            }
            guard let message = traffic.next() else { break }  // every sensor fell silent
            // Pace against the schedule, not the previous send, so the rate holds on average.
            let due = start + .milliseconds(Int64(message.dueMs))
            if due > ContinuousClock.now { try await Task.sleep(until: due, clock: .continuous) }
            while tracker.pending > options.maxPending { try await Task.sleep(for: .milliseconds(2)) }
            try publish(message)
            sent += 1
            if ContinuousClock.now - lastProgress >= .seconds(1) {
                lastProgress = ContinuousClock.now
                report()
            }
        }
        if stateTopic == nil || inSession {
            for death in traffic.deaths() { try publish(death) }
        }
        // Every QoS 1 publish must be acknowledged by the broker before the manifest is true.
        let deadline = ContinuousClock.now + .seconds(60)
        while tracker.pending > 0 {
            guard ContinuousClock.now < deadline else {
                throw SimulatorError(description: "\(tracker.pending) of \(manifest.messagesPublished) publishes were not acknowledged by \(options.broker) within 60 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        report()
        return manifest
    }
}

/// Counts publishes and their PUBACKs (called from the MQTT thread).
final class PublishTracker: Sendable {
    private struct State {
        var published = 0, acknowledged = 0
        var connected = false, rebirth = false
        /// The primary host's STATE as the edge node takes it (Sparkplug 3.0): online from an
        /// online STATE at least as new as the last one seen; offline from an offline STATE at
        /// least as new as the last online (an older one is an earlier session's late will).
        var hostOnline = false
        var lastStateTimestamp: Int64?
        var lastOnlineTimestamp: Int64?
    }
    private let state = Mutex(State())

    func hostState(_ received: SparkplugHostState) {
        state.withLock { s in
            if received.online {
                guard s.lastStateTimestamp.map({ received.timestamp >= $0 }) ?? true else { return }
                s.hostOnline = true
                s.lastOnlineTimestamp = received.timestamp
            } else {
                guard s.lastOnlineTimestamp.map({ received.timestamp >= $0 }) ?? true else { return }
                s.hostOnline = false
            }
            s.lastStateTimestamp = max(s.lastStateTimestamp ?? received.timestamp, received.timestamp)
        }
    }

    var hostOnline: Bool { state.withLock { $0.hostOnline } }

    func published() { state.withLock { $0.published += 1 } }
    func requestRebirth() { state.withLock { $0.rebirth = true } }
    func takeRebirthRequest() -> Bool { state.withLock { s in
        defer { s.rebirth = false }
        return s.rebirth
    } }
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
