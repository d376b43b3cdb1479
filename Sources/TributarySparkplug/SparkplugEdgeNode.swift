import SwiftProtobuf
import TributaryCore

/// The edge node side of Sparkplug B, enough to simulate one: it numbers messages (seq 0-255,
/// NBIRTH is 0), keeps the session's bdSeq, gives each metric an alias at birth and sends data
/// by alias only, as real edge nodes do to keep messages small.
public struct SparkplugEdgeNode: Sendable {
    public struct Metric: Sendable, Equatable {
        public var name: String
        public var type: SparkplugDataType
        public var value: ReadingValue
        /// Sent with `is_historical`: a value kept and sent late, not the current one.
        public var isHistorical: Bool
        public init(name: String, type: SparkplugDataType, value: ReadingValue, isHistorical: Bool = false) {
            self.name = name
            self.type = type
            self.value = value
            self.isHistorical = isHistorical
        }
    }

    public struct Message: Sendable, Equatable {
        public var topic: String
        public var payload: [UInt8]
    }

    public let node: SparkplugTopic.Node
    /// The session number: sent in NBIRTH, and in the NDEATH the broker delivers as our will.
    public private(set) var bdSeq: UInt64
    private var seq: UInt64 = 0
    private var aliases: [String: UInt64] = [:]

    public init(group: String, edgeNode: String, bdSeq: UInt64 = 0) {
        node = SparkplugTopic.Node(group: group, edgeNode: edgeNode)
        self.bdSeq = bdSeq
    }

    /// NBIRTH: seq starts again at 0; every alias (node and devices) is given again by the
    /// births that follow.
    public mutating func birth(metrics: [Metric], timeMs: Int64) -> Message {
        seq = 0
        aliases = [:]
        var bdSeqMetric = SparkplugB_Payload.Metric()
        bdSeqMetric.name = SparkplugHost.bdSeqMetric
        SparkplugDataType.int64.set(.integer(Int64(bitPattern: bdSeq)), on: &bdSeqMetric)
        return message(.nbirth, device: nil, metrics: [bdSeqMetric] + define(metrics, prefix: "", timeMs: timeMs), timeMs: timeMs)
    }

    public mutating func deviceBirth(_ device: String, metrics: [Metric], timeMs: Int64) -> Message {
        message(.dbirth, device: device, metrics: define(metrics, prefix: device, timeMs: timeMs), timeMs: timeMs)
    }

    /// DDATA (or NDATA without a device) by alias; every metric must have been born.
    public mutating func data(_ device: String?, metrics: [Metric], timeMs: Int64) -> Message {
        let encoded = metrics.map { metric in
            var m = SparkplugB_Payload.Metric()
            guard let alias = aliases[key(device ?? "", metric.name)] else {
                preconditionFailure("metric \(metric.name) of \(device ?? "the node") was not in its birth")
            }
            m.alias = alias
            m.timestamp = UInt64(max(0, timeMs))
            if metric.isHistorical { m.isHistorical = true }
            metric.type.set(metric.value, on: &m)
            return m
        }
        return message(device == nil ? .ndata : .ddata, device: device, metrics: encoded, timeMs: timeMs)
    }

    public mutating func deviceDeath(_ device: String, timeMs: Int64) -> Message {
        message(.ddeath, device: device, metrics: [], timeMs: timeMs)
    }

    /// NDEATH for this session (no seq, by the specification). The next session's bdSeq is one
    /// more. `timeMs` for a death published by the node itself; a will has none (it was made
    /// at connect time).
    public mutating func death(timeMs: Int64? = nil) -> Message {
        var metric = SparkplugB_Payload.Metric()
        metric.name = SparkplugHost.bdSeqMetric
        SparkplugDataType.int64.set(.integer(Int64(bitPattern: bdSeq)), on: &metric)
        var payload = SparkplugB_Payload()
        payload.metrics = [metric]
        if let timeMs { payload.timestamp = UInt64(max(0, timeMs)) }
        bdSeq = (bdSeq &+ 1) % 256
        return Message(topic: SparkplugTopic(group: node.group, type: .ndeath, edgeNode: node.edgeNode).description,
                       payload: (try? payload.serializedBytes()) ?? [])
    }

    /// Skips one seq number, as a message lost between edge node and broker would.
    public mutating func skipSequenceNumber() { seq = (seq &+ 1) % 256 }

    private mutating func define(_ metrics: [Metric], prefix: String, timeMs: Int64) -> [SparkplugB_Payload.Metric] {
        metrics.map { metric in
            let alias = UInt64(aliases.count + 1)
            aliases[key(prefix, metric.name)] = alias
            var m = SparkplugB_Payload.Metric()
            m.name = metric.name
            m.alias = alias
            m.timestamp = UInt64(max(0, timeMs))
            metric.type.set(metric.value, on: &m)
            return m
        }
    }

    private func key(_ device: String, _ name: String) -> String { device + "\u{1F}" + name }

    private mutating func message(_ type: SparkplugTopic.MessageType, device: String?, metrics: [SparkplugB_Payload.Metric],
                                  timeMs: Int64) -> Message {
        var payload = SparkplugB_Payload()
        payload.timestamp = UInt64(max(0, timeMs))
        payload.seq = seq
        payload.metrics = metrics
        seq = (seq &+ 1) % 256
        let topic = SparkplugTopic(group: node.group, type: type, edgeNode: node.edgeNode, device: device)
        return Message(topic: topic.description, payload: (try? payload.serializedBytes()) ?? [])
    }
}
