import TributaryCore
import TributarySparkplug

/// What the sensors of one simulated gateway send, message by message, in the order they send
/// it: pure and seeded, so the same options and start time give the same messages and the same
/// manifest. `SensorSimulator` publishes them in real time; tests can read them directly.
///
/// Each sensor has its own device kind, signal models, schedule (its rate with jitter and
/// bursts) and clock (its skew); faults are drawn per message.
public struct TrafficGenerator: Sendable {
    public struct Message: Sendable, Equatable {
        /// When it is due, in ms since the start of the run.
        public var dueMs: Double
        public var topic: String
        public var payload: [UInt8]
        /// The readings the sink must end up with (none for a malformed message).
        public var entries: [Manifest.Entry]
        public var fault: Fault?
    }

    public enum Fault: String, Sendable, Equatable {
        /// A payload the agent cannot decode: it must be quarantined, nothing stored.
        case malformed
        /// Published twice with the same bytes: the readings must be stored once.
        case duplicate
        /// Sent after a message that was due later.
        case outOfOrder = "out_of_order"
    }

    struct Device: Sendable {
        let id: String
        let kind: DeviceKind
        var signals: [Signal]
        let skewMs: Int64
        /// A silent sensor stops after this many messages (a dead battery, a cut cable).
        let silentAfter: Int?
        var sent = 0
        var lastTimeMs: Int64 = .min

        var isSilent: Bool { silentAfter.map { sent >= $0 } ?? false }
    }

    public let options: SensorSimulator.Options
    public let startMs: Int64
    private var generator: SeededGenerator
    private var devices: [Device] = []
    private var queue = DueQueue()
    private var held: Message?
    /// Sparkplug births waiting to go out first: at the start and after a rebirth request.
    private var births: [Message] = []
    private var edgeNode: SparkplugEdgeNode?
    private var lastDueMs = 0.0

    public init(options: SensorSimulator.Options, startMs: Int64) {
        self.options = options
        self.startMs = startMs
        generator = SeededGenerator(seed: options.seed)
        let kinds = options.kinds.isEmpty ? [DeviceKind.plug] : options.kinds
        let interval = baseIntervalMs
        for index in 0..<options.sensors {
            let kind = kinds[index % kinds.count]
            let signals = kind.metrics.map { Signal($0.model, generator: &generator) }
            let skew = options.faults.clockSkewMs > 0
                ? Int64.random(in: -options.faults.clockSkewMs...options.faults.clockSkewMs, using: &generator) : 0
            let silent = chance(options.faults.silentShare) ? Int.random(in: 0...3, using: &generator) : nil
            devices.append(Device(id: String(format: "sensor-%04d", index), kind: kind, signals: signals, skewMs: skew, silentAfter: silent))
            // Spread the first messages over one interval, as devices powered up at different times.
            if silent != 0 { queue.push(interval * Double(index) / Double(max(options.sensors, 1)), index) }
        }
        if kinds.contains(.sparkplug) {
            // bdSeq from the start time: two runs a few minutes apart do not send byte-identical
            // deaths, which the agent would take for a redelivery of the first.
            edgeNode = SparkplugEdgeNode(group: options.topicPrefix, edgeNode: options.gatewayID, bdSeq: UInt64(startMs / 1000 % 256))
            births = makeBirths()
        }
    }

    /// The sensor ids of the sensors that fall silent during the run.
    public var silentSensors: [String] {
        devices.filter { $0.silentAfter != nil }.map { sensorID(of: $0) }
    }

    /// The MQTT topic a rebirth request for this gateway's edge node arrives on.
    public var rebirthTopic: String? { edgeNode?.node.commandTopic }

    // MARK: messages

    /// The next message, or nil when every sensor has fallen silent. Sparkplug births come
    /// first, and again after `requestRebirth`.
    public mutating func next() -> Message? {
        if !births.isEmpty { return births.removeFirst() }
        if let message = held {
            held = nil
            return message
        }
        guard var message = produce() else { return nil }
        if message.fault == nil, chance(options.faults.outOfOrderShare), let following = produce() {
            message.fault = .outOfOrder
            held = message
            return following
        }
        return message
    }

    /// The host asked for a rebirth: NBIRTH and the DBIRTHs go out next, with current values.
    public mutating func requestRebirth() {
        guard edgeNode != nil else { return }
        births += makeBirths()
    }

    /// NBIRTH and a DBIRTH per Sparkplug device, with current values.
    private mutating func makeBirths() -> [Message] {
        guard var node = edgeNode else { return [] }
        let nodeTime = startMs + Int64(lastDueMs)
        let nbirth = node.birth(metrics: [], timeMs: nodeTime)
        var messages = [Message(dueMs: lastDueMs, topic: nbirth.topic, payload: nbirth.payload, entries: [])]
        // A sensor that fell silent (or never spoke) has no birth either.
        for index in devices.indices where devices[index].kind == .sparkplug && !devices[index].isSilent {
            var device = devices[index]
            let timeMs = stamp(&device, dueMs: lastDueMs)
            let metrics = sparkplugMetrics(&device, timeMs: timeMs)
            devices[index] = device
            let birth = node.deviceBirth(device.id, metrics: metrics, timeMs: timeMs)
            messages.append(Message(dueMs: lastDueMs, topic: birth.topic, payload: birth.payload,
                                    entries: entries(device, metrics.map { ($0.name, $0.value) }, timeMs: timeMs)))
        }
        edgeNode = node
        return messages
    }

    /// DDEATH for each Sparkplug device and NDEATH for the node: a clean end of the session.
    public mutating func deaths() -> [Message] {
        guard var node = edgeNode else { return [] }
        let timeMs = startMs + Int64(lastDueMs)
        var messages = devices.filter { $0.kind == .sparkplug && !$0.isSilent }.map { device in
            let death = node.deviceDeath(device.id, timeMs: timeMs)
            return Message(dueMs: lastDueMs, topic: death.topic, payload: death.payload, entries: [])
        }
        let death = node.death(timeMs: timeMs)
        messages.append(Message(dueMs: lastDueMs, topic: death.topic, payload: death.payload, entries: []))
        edgeNode = node
        return messages
    }

    private mutating func produce() -> Message? {
        guard let (dueMs, index) = queue.pop() else { return nil }
        lastDueMs = max(lastDueMs, dueMs)
        var device = devices[index]
        defer { devices[index] = device }
        let timeMs = stamp(&device, dueMs: dueMs)
        device.sent += 1
        if !device.isSilent {
            queue.push(dueMs + nextInterval(after: dueMs), index)
        }
        let malformed = chance(options.faults.malformedShare)
        var message: Message
        switch device.kind {
        case .plug, .environment, .meter:
            let values = device.signals.indices.map { device.signals[$0].sample(timeMs: timeMs, generator: &generator) }
            let micros = Int64.random(in: 0..<1000, using: &generator)
            var text = device.kind.json(values, timeMs: timeMs, microseconds: micros)
            if malformed { text.removeLast(2) }  // cut short, as a lost packet leaves it
            message = Message(dueMs: dueMs, topic: "\(options.topicPrefix)/\(options.gatewayID)/\(device.id)", payload: Array(text.utf8),
                              entries: malformed ? [] : entries(device, zip(device.kind.metrics.map(\.name), values).map { ($0, $1) }, timeMs: timeMs))
        case .number:
            // One metric per message, taking turns.
            let metricIndex = (device.sent - 1) % device.signals.count
            let value = device.signals[metricIndex].sample(timeMs: timeMs, generator: &generator)
            let name = device.kind.metrics[metricIndex].name
            let text = malformed ? "\(value.jsonLiteral)V" : value.jsonLiteral
            message = Message(dueMs: dueMs, topic: "\(options.topicPrefix)/\(options.gatewayID)/\(device.id)/\(name)", payload: Array(text.utf8),
                              entries: malformed ? [] : entries(device, [(name, value)], timeMs: nil))
        case .sparkplug:
            let metrics = sparkplugMetrics(&device, timeMs: timeMs)
            var node = edgeNode!
            let topic = SparkplugTopic(group: node.node.group, type: .ddata, edgeNode: node.node.edgeNode, device: device.id).description
            if malformed {
                // Not a protobuf message at all (tag 0 with wire type 7), and the edge node's seq
                // does not move. Random bytes follow: the same bytes twice on a topic would be
                // taken for a redelivery, not quarantined again.
                let noise = (0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) }
                message = Message(dueMs: dueMs, topic: topic, payload: [0x07] + noise, entries: [])
            } else {
                let data = node.data(device.id, metrics: metrics, timeMs: timeMs)
                message = Message(dueMs: dueMs, topic: data.topic, payload: data.payload,
                                  entries: entries(device, metrics.map { ($0.name, $0.value) }, timeMs: timeMs))
            }
            edgeNode = node
        }
        if malformed {
            message.fault = .malformed
        } else if device.kind != .number, chance(options.faults.duplicateShare) {
            // A plain number without a time of its own cannot be told from a new reading, so
            // only messages that carry their time are duplicated.
            message.fault = .duplicate
        }
        return message
    }

    // MARK: helpers

    /// The device's clock for a message due at `dueMs`: the run's clock plus its skew, and
    /// always later than its previous message (a device never stamps two readings alike).
    private func stamp(_ device: inout Device, dueMs: Double) -> Int64 {
        let timeMs = max(startMs + Int64(dueMs) + device.skewMs, device.lastTimeMs &+ 1)
        device.lastTimeMs = timeMs
        return timeMs
    }

    private mutating func sparkplugMetrics(_ device: inout Device, timeMs: Int64) -> [SparkplugEdgeNode.Metric] {
        device.kind.metrics.indices.map { i in
            SparkplugEdgeNode.Metric(name: device.kind.metrics[i].name, type: device.kind.metrics[i].sparkplugType,
                                     value: device.signals[i].sample(timeMs: timeMs, generator: &generator))
        }
    }

    /// The sensor id the agent gives the device's readings.
    private func sensorID(of device: Device) -> String {
        guard device.kind == .sparkplug, let node = edgeNode?.node else { return device.id }
        return node.sensorID(device: device.id)
    }

    private func entries(_ device: Device, _ values: [(String, ReadingValue)], timeMs: Int64?) -> [Manifest.Entry] {
        values.map { Manifest.Entry(gatewayID: options.gatewayID, sensorID: sensorID(of: device), metric: $0.0, timeMs: timeMs, value: $0.1) }
    }

    private var baseIntervalMs: Double {
        if let perSensor = options.sensorRate { return 1000 / max(perSensor, 0.001) }
        return 1000 * Double(max(options.sensors, 1)) / max(options.rate, 0.001)
    }

    /// The gap to a sensor's next message: its rate's interval, varied by the jitter, and
    /// shortened during a burst.
    private mutating func nextInterval(after dueMs: Double) -> Double {
        var interval = baseIntervalMs
        if options.jitter > 0 { interval *= 1 + Double.random(in: -options.jitter...options.jitter, using: &generator) }
        if let burst = options.burst, burst.everyMs > 0, dueMs.truncatingRemainder(dividingBy: Double(burst.everyMs)) < Double(burst.lengthMs) {
            interval /= max(burst.factor, 1)
        }
        return max(interval, 0)
    }

    private mutating func chance(_ share: Double) -> Bool {
        share > 0 && Double.random(in: 0..<1, using: &generator) < share
    }
}

/// The sensors' next due times: a binary min-heap, ties broken by sensor index so the order
/// is the same on every run.
struct DueQueue: Sendable {
    private var items: [(due: Double, index: Int)] = []

    private static func before(_ a: (due: Double, index: Int), _ b: (due: Double, index: Int)) -> Bool {
        a.due < b.due || (a.due == b.due && a.index < b.index)
    }

    mutating func push(_ due: Double, _ index: Int) {
        items.append((due, index))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(items[child], items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (Double, Int)? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        items[0] = items[items.count - 1]
        items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count, Self.before(items[left], items[smallest]) { smallest = left }
            if right < items.count, Self.before(items[right], items[smallest]) { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return (top.due, top.index)
    }
}
