import Foundation
import SwiftProtobuf
import TributaryCore

/// The Sparkplug B host application side of the agent: it follows each edge node's session
/// (births, deaths, bdSeq, seq) and turns data messages into readings.
///
/// Pure state, fed one message at a time in arrival order by one thread. Readings are named:
/// sensor `{group}/{edge node}` for node metrics and `{group}/{edge node}/{device}` for device
/// metrics, metric = the Sparkplug metric name, event time = the metric's timestamp, else the
/// payload's, else the receive time. A metric flagged `is_historical` carries the label
/// `historical=true`.
///
/// What it does when a node's session cannot be followed (Sparkplug 3.0, host application):
/// - a seq that is not the one expected is a gap: reported, a rebirth requested, and the
///   message still used (its aliases are known, so its values are good);
/// - data, or a device birth, from a node whose NBIRTH was never seen (the agent started after
///   it) or whose aliases do not resolve: the message is quarantined whole (kept, never half
///   stored) and a rebirth requested, so the next messages decode;
/// - an NDEATH whose bdSeq is not the current session's is an old session's will: ignored.
///
/// What the births defined outlives the agent: `takeDefinitions()` gives it (as JSON) whenever
/// a birth or death changed it, the agent commits it with the readings, and `init(restoring:)`
/// reads it back. So messages the broker kept for the agent while it was down still decode
/// when it comes back, instead of waiting behind them for a rebirth. The seq is not kept:
/// after a restart the first message of each node sets it again.
public struct SparkplugHost: Sendable {
    public struct MetricDefinition: Sendable, Equatable, Codable {
        public var name: String
        public var datatype: SparkplugDataType?
    }

    struct DeviceState: Sendable, Codable {
        var online = true
        var aliases: [UInt64: MetricDefinition] = [:]
        var names: [String: SparkplugDataType?] = [:]
    }

    struct NodeState: Sendable, Codable {
        var bdSeq: UInt64?
        var online = false
        /// Nil after a restart: the next message's seq is taken as it comes.
        var expectedSeq: UInt64?
        var aliases: [UInt64: MetricDefinition] = [:]
        var names: [String: SparkplugDataType?] = [:]
        var devices: [String: DeviceState] = [:]
        var rebirthRequestedAtMs: Int64?
    }

    /// Something worth a log line and a counter; never a reason to lose a message.
    public enum Notice: Sendable, Equatable, CustomStringConvertible {
        case sequenceGap(node: String, expected: UInt64, received: UInt64)
        case staleDeath(node: String, bdSeq: UInt64?, current: UInt64?)
        case unsupportedMetric(sensor: String, metric: String, reason: String)
        case birthWithoutBdSeq(node: String)

        public var description: String {
            switch self {
            case .sequenceGap(let node, let expected, let received):
                "node \(node): seq \(received) where \(expected) was expected (messages lost or reordered)"
            case .staleDeath(let node, let bdSeq, let current):
                "node \(node): NDEATH with bdSeq \(bdSeq.map(String.init) ?? "none") is not the current session's (\(current.map(String.init) ?? "none")); ignored"
            case .unsupportedMetric(let sensor, let metric, let reason):
                "\(sensor) metric '\(metric)' not stored: \(reason)"
            case .birthWithoutBdSeq(let node):
                "node \(node): NBIRTH without a bdSeq metric; its NDEATH cannot be matched"
            }
        }
    }

    public struct Outcome: Sendable, Equatable {
        public var readings: [Reading] = []
        /// Set when the message cannot be used: it goes to quarantine whole, with this reason.
        public var quarantineReason: String?
        public var notices: [Notice] = []
        /// The node to ask for a rebirth (an NCMD with `Node Control/Rebirth` = true).
        public var rebirth: SparkplugTopic.Node?
        /// Whether the payload carried its own timestamp (then the same payload again is a
        /// redelivery, not new readings).
        public var carriesEventTime = false
    }

    /// A rebirth is asked for at most this often per node while its birth does not come.
    public var rebirthIntervalMs: Int64 = 5_000
    /// Edge nodes followed at most; past it, data from nodes never born is quarantined without
    /// keeping anything about them (a stream of made-up node ids cannot grow memory).
    public var maxNodes = 10_000
    private var nodes: [SparkplugTopic.Node: NodeState] = [:]
    private var definitionsChanged = false
    public let gatewayID: String

    public init(gatewayID: String) {
        self.gatewayID = gatewayID
    }

    /// Picks up the sessions `takeDefinitions()` saved; nil or unreadable JSON starts empty
    /// (the next data of each node then brings a rebirth request).
    public init(gatewayID: String, restoring saved: String?) {
        self.gatewayID = gatewayID
        guard let saved, let restored = try? JSONDecoder().decode([SparkplugTopic.Node: NodeState].self, from: Data(saved.utf8)) else { return }
        nodes = restored.mapValues { state in
            var state = state
            state.expectedSeq = nil
            return state
        }
    }

    /// The sessions as JSON when a birth or death changed them since the last call, else nil.
    public mutating func takeDefinitions() -> String? {
        guard definitionsChanged else { return nil }
        definitionsChanged = false
        let kept = nodes.filter { $0.value.bdSeq != nil || !$0.value.aliases.isEmpty || !$0.value.devices.isEmpty }
        guard let data = try? JSONEncoder().encode(kept) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    public static let bdSeqMetric = "bdSeq"
    /// The label on readings of metrics flagged `is_historical`: values the edge node kept and
    /// sent late (store and forward), not the current value. Their time is the metric's own, as
    /// for live values; the label keeps them a series of their own, apart from the live one.
    public static let historicalLabel = "historical"
    public static let rebirthMetric = "Node Control/Rebirth"

    /// The NCMD payload asking an edge node to publish its births again.
    public static func rebirthRequest(timestampMs: Int64) -> [UInt8] {
        var metric = SparkplugB_Payload.Metric()
        metric.name = rebirthMetric
        metric.timestamp = UInt64(max(0, timestampMs))
        SparkplugDataType.boolean.set(.boolean(true), on: &metric)
        var payload = SparkplugB_Payload()
        payload.timestamp = UInt64(max(0, timestampMs))
        payload.metrics = [metric]
        return (try? payload.serializedBytes()) ?? []
    }

    /// Whether the node's session is being followed (its NBIRTH seen, no NDEATH since).
    public func isOnline(_ node: SparkplugTopic.Node) -> Bool { nodes[node]?.online ?? false }

    public mutating func receive(topic: String, payload: some Collection<UInt8>, receivedAtMs: Int64) -> Outcome {
        // A host application's STATE (spBv1.0/STATE/HOST_ID) is for edge nodes, not data.
        if topic.hasPrefix(SparkplugTopic.namespace + "/STATE/") { return Outcome() }
        guard let parsed = SparkplugTopic(topic) else {
            return Outcome(quarantineReason: "not a Sparkplug B node or device topic (spBv1.0/GROUP/TYPE/EDGE_NODE[/DEVICE])")
        }
        // Commands are for edge nodes, not data: nothing to store, nothing lost.
        if parsed.type == .ncmd || parsed.type == .dcmd { return Outcome() }
        let message: SparkplugB_Payload
        do {
            message = try SparkplugB_Payload(serializedBytes: Array(payload))
        } catch {
            return Outcome(quarantineReason: "not a Sparkplug B payload: \(error)")
        }
        var outcome = Outcome(carriesEventTime: message.hasTimestamp)
        let node = parsed.node
        switch parsed.type {
        case .nbirth: nodeBirth(node, message, topic: topic, receivedAtMs: receivedAtMs, into: &outcome)
        case .ndeath: nodeDeath(node, message, into: &outcome)
        case .dbirth, .ddata, .ddeath, .ndata:
            deviceOrDataMessage(parsed, message, topic: topic, receivedAtMs: receivedAtMs, into: &outcome)
        case .ncmd, .dcmd: break
        }
        return outcome
    }

    // MARK: node sessions

    private mutating func nodeBirth(_ node: SparkplugTopic.Node, _ message: SparkplugB_Payload, topic: String,
                                    receivedAtMs: Int64, into outcome: inout Outcome) {
        // A birth starts the count afresh, whatever its seq (0 by Sparkplug 2.2; 3.0 allows others).
        var state = NodeState()
        state.online = true
        state.expectedSeq = (message.seq &+ 1) % 256
        state.bdSeq = Self.bdSeq(of: message)
        if state.bdSeq == nil { outcome.notices.append(.birthWithoutBdSeq(node: node.description)) }
        (state.aliases, state.names) = Self.definitions(in: message)
        nodes[node] = state
        definitionsChanged = true
        emit(message, sensor: node.sensorID(), topic: topic, resolve: { m in MetricDefinition(name: m.name, datatype: state.names[m.name] ?? nil) },
             skipControl: true, receivedAtMs: receivedAtMs, into: &outcome)
    }

    private mutating func nodeDeath(_ node: SparkplugTopic.Node, _ message: SparkplugB_Payload, into outcome: inout Outcome) {
        let bdSeq = Self.bdSeq(of: message)
        guard var state = nodes[node], state.online, bdSeq == state.bdSeq else {
            outcome.notices.append(.staleDeath(node: node.description, bdSeq: bdSeq, current: nodes[node]?.bdSeq))
            return
        }
        state.online = false
        for key in state.devices.keys { state.devices[key]?.online = false }
        nodes[node] = state
        definitionsChanged = true
    }

    private mutating func deviceOrDataMessage(_ topic: SparkplugTopic, _ message: SparkplugB_Payload, topic text: String,
                                              receivedAtMs: Int64, into outcome: inout Outcome) {
        let node = topic.node
        guard nodes[node] != nil || nodes.count < maxNodes else {
            if topic.type != .ddeath {
                outcome.quarantineReason = "\(topic.type.rawValue) from node \(node) before its NBIRTH, and \(maxNodes) nodes are already followed"
            }
            return
        }
        var state = nodes[node] ?? NodeState()
        defer { nodes[node] = state }
        guard state.online else {
            if topic.type == .ddeath { return }  // a device of a node already gone: nothing to do
            outcome.quarantineReason = "\(topic.type.rawValue) from node \(node) before its NBIRTH (aliases unknown)"
            requestRebirth(node, &state, nowMs: receivedAtMs, into: &outcome)
            return
        }
        if let expected = state.expectedSeq, message.seq != expected {
            outcome.notices.append(.sequenceGap(node: node.description, expected: expected, received: message.seq))
            requestRebirth(node, &state, nowMs: receivedAtMs, into: &outcome)
        }
        state.expectedSeq = (message.seq &+ 1) % 256

        switch topic.type {
        case .ndata:
            let resolved = resolve(message, aliases: state.aliases, names: state.names)
            guard let resolved else {
                outcome.quarantineReason = "NDATA from node \(node) names a metric its NBIRTH did not define"
                requestRebirth(node, &state, nowMs: receivedAtMs, into: &outcome)
                return
            }
            emit(message, sensor: node.sensorID(), topic: text, resolve: resolved, skipControl: true,
                 receivedAtMs: receivedAtMs, into: &outcome)
        case .dbirth:
            let device = topic.device!
            var deviceState = DeviceState()
            (deviceState.aliases, deviceState.names) = Self.definitions(in: message)
            state.devices[device] = deviceState
            definitionsChanged = true
            emit(message, sensor: node.sensorID(device: device), topic: text,
                 resolve: { m in MetricDefinition(name: m.name, datatype: deviceState.names[m.name] ?? nil) },
                 skipControl: false, receivedAtMs: receivedAtMs, into: &outcome)
        case .ddata:
            let device = topic.device!
            guard let deviceState = state.devices[device], deviceState.online else {
                outcome.quarantineReason = "DDATA from device \(node)/\(device) before its DBIRTH (aliases unknown)"
                requestRebirth(node, &state, nowMs: receivedAtMs, into: &outcome)
                return
            }
            guard let resolved = resolve(message, aliases: deviceState.aliases, names: deviceState.names) else {
                outcome.quarantineReason = "DDATA from device \(node)/\(device) names a metric its DBIRTH did not define"
                requestRebirth(node, &state, nowMs: receivedAtMs, into: &outcome)
                return
            }
            emit(message, sensor: node.sensorID(device: device), topic: text, resolve: resolved, skipControl: false,
                 receivedAtMs: receivedAtMs, into: &outcome)
        case .ddeath:
            state.devices[topic.device!]?.online = false
            definitionsChanged = true
        case .nbirth, .ndeath, .ncmd, .dcmd:
            break
        }
    }

    private func requestRebirth(_ node: SparkplugTopic.Node, _ state: inout NodeState, nowMs: Int64, into outcome: inout Outcome) {
        if let last = state.rebirthRequestedAtMs, nowMs >= last, nowMs - last < rebirthIntervalMs { return }
        state.rebirthRequestedAtMs = nowMs
        outcome.rebirth = node
    }

    // MARK: metrics to readings

    /// The session number an NBIRTH or NDEATH carries in its `bdSeq` metric.
    private static func bdSeq(of message: SparkplugB_Payload) -> UInt64? {
        guard let metric = message.metrics.first(where: { $0.name == bdSeqMetric }), case .longValue(let value)? = metric.value else { return nil }
        return value
    }

    /// What a birth defines: each metric's alias and datatype.
    private static func definitions(in birth: SparkplugB_Payload) -> ([UInt64: MetricDefinition], [String: SparkplugDataType?]) {
        var aliases: [UInt64: MetricDefinition] = [:]
        var names: [String: SparkplugDataType?] = [:]
        for metric in birth.metrics {
            let definition = MetricDefinition(name: metric.name, datatype: metric.hasDatatype ? SparkplugDataType(rawValue: metric.datatype) : nil)
            if metric.hasAlias { aliases[metric.alias] = definition }
            names[metric.name] = definition.datatype
        }
        return (aliases, names)
    }

    /// A lookup that names and types every metric of a data message, or nil when one cannot
    /// be: an alias no birth defined, or a name without a datatype that no birth defined.
    private func resolve(_ message: SparkplugB_Payload, aliases: [UInt64: MetricDefinition],
                         names: [String: SparkplugDataType?]) -> ((SparkplugB_Payload.Metric) -> MetricDefinition?)? {
        for metric in message.metrics {
            if metric.hasName, !metric.name.isEmpty {
                guard metric.hasDatatype || names[metric.name] != nil else { return nil }
                continue
            }
            guard metric.hasAlias, aliases[metric.alias] != nil else { return nil }
        }
        return { metric in
            if metric.hasName, !metric.name.isEmpty { return MetricDefinition(name: metric.name, datatype: names[metric.name] ?? nil) }
            return aliases[metric.alias]
        }
    }

    private func emit(_ message: SparkplugB_Payload, sensor: String, topic: String,
                      resolve: (SparkplugB_Payload.Metric) -> MetricDefinition?, skipControl: Bool,
                      receivedAtMs: Int64, into outcome: inout Outcome) {
        let messageTime = message.hasTimestamp ? Self.time(message.timestamp) : receivedAtMs
        for metric in message.metrics {
            guard let definition = resolve(metric) else { continue }
            // bdSeq and the Node Control commands describe the session, not the plant.
            if skipControl, definition.name == Self.bdSeqMetric || definition.name.hasPrefix("Node Control/") { continue }
            let type = metric.hasDatatype ? SparkplugDataType(rawValue: metric.datatype) : definition.datatype
            guard let type else {
                outcome.notices.append(.unsupportedMetric(sensor: sensor, metric: definition.name, reason: "unknown datatype \(metric.datatype)"))
                continue
            }
            switch type.value(of: metric) {
            case .none:
                continue
            case .unsupported(let reason):
                outcome.notices.append(.unsupportedMetric(sensor: sensor, metric: definition.name, reason: reason))
            case .value(let value):
                outcome.readings.append(Reading(
                    gatewayID: gatewayID, sensorID: sensor, metric: definition.name, topic: topic,
                    timeMs: metric.hasTimestamp ? Self.time(metric.timestamp) : messageTime,
                    receivedAtMs: receivedAtMs, value: value,
                    labels: metric.isHistorical ? [Self.historicalLabel: "true"] : [:]))
            }
        }
    }

    /// Sparkplug times are ms since the epoch; a value past Int64 is clamped, not trapped on.
    private static func time(_ value: UInt64) -> Int64 { Int64(min(value, UInt64(Int64.max))) }
}
