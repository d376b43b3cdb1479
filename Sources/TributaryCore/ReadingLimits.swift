/// What one reading may carry. The agent checks it when it decodes a payload (one that breaks
/// it is quarantined, with the reason) and the aggregator when a batch arrives (it refuses the
/// batch): the same numbers on both sides, so an agent never seals a batch its aggregator must
/// refuse, and one request can never make the sink store much more than it carried.
public struct ReadingLimits: Sendable, Equatable {
    public static let maxGatewayIDBytes = 128
    /// A buffer's epoch (the agent makes a 36-character UUID).
    public static let maxEpochBytes = 64
    public static let maxSensorIDBytes = 256
    public static let maxMetricBytes = 256
    public static let maxTopicBytes = 1024
    public static let maxUnitBytes = 64
    public static let maxLabels = 32
    public static let maxLabelKeyBytes = 128
    public static let maxLabelValueBytes = 512
    /// Gateway, sensor, metric, topic, unit and labels of one reading together.
    public static let maxDescriptionBytes = 4096

    /// A text value. The aggregator's `limits.max_string_bytes`; the agent uses the default.
    public var maxTextBytes: Int

    public static let defaultMaxTextBytes = 4096

    public init(maxTextBytes: Int = ReadingLimits.defaultMaxTextBytes) {
        self.maxTextBytes = maxTextBytes
    }

    /// Why `reading` is out of bounds, or nil when it is not.
    public func violation(of reading: Reading) -> String? {
        if let problem = Self.violation(gateway: reading.gatewayID, sensor: reading.sensorID, metric: reading.metric,
                                        topic: reading.topic, unit: reading.unit ?? "", labels: reading.labels.lazy.map { ($0.key, $0.value) }) {
            return problem
        }
        if case .text(let text) = reading.value, text.utf8.count > maxTextBytes {
            return "a text value of \(text.utf8.count) bytes exceeds the limit of \(maxTextBytes)"
        }
        return nil
    }

    /// Why a series' description is out of bounds, or nil: the part of `violation(of:)` that
    /// is the same for every reading of a series.
    public static func violation(gateway: String, sensor: String, metric: String, topic: String, unit: String,
                                 labels: some Sequence<(String, String)>) -> String? {
        if gateway.isEmpty { return "the gateway id is empty" }
        if sensor.isEmpty { return "the sensor id is empty" }
        if metric.isEmpty { return "the metric name is empty (a JSON key \"\"?)" }
        var total = 0
        for (what, value, limit) in [("gateway id", gateway, maxGatewayIDBytes), ("sensor id", sensor, maxSensorIDBytes),
                                     ("metric name", metric, maxMetricBytes), ("topic", topic, maxTopicBytes), ("unit", unit, maxUnitBytes)] {
            let size = value.utf8.count
            if size > limit { return "the \(what) has \(size) bytes; the limit is \(limit)" }
            total += size
        }
        var count = 0
        for (key, value) in labels {
            count += 1
            if count > maxLabels { return "more than \(maxLabels) labels" }
            let keySize = key.utf8.count, valueSize = value.utf8.count
            if key.isEmpty { return "a label has an empty name" }
            if keySize > maxLabelKeyBytes { return "a label name has \(keySize) bytes; the limit is \(maxLabelKeyBytes)" }
            if valueSize > maxLabelValueBytes { return "the value of label '\(Printable.clean(key, maxLength: 64))' has \(valueSize) bytes; the limit is \(maxLabelValueBytes)" }
            total += keySize + valueSize
        }
        if total > maxDescriptionBytes {
            return "its ids, unit and labels take \(total) bytes together; the limit is \(maxDescriptionBytes)"
        }
        return nil
    }

    /// What the rest of a stored row takes: times, value columns, references.
    public static let rowOverheadBytes = 64

    /// What one reading costs a sink that writes a row per reading with its whole description
    /// (ClickHouse's insert, the fleet simulator's manifests): ids, topic, unit, labels, the
    /// text value and the rest of the row.
    public static func expandedBytes(of reading: Reading) -> Int {
        var bytes = rowOverheadBytes + reading.gatewayID.utf8.count + reading.sensorID.utf8.count + reading.metric.utf8.count
            + reading.topic.utf8.count + (reading.unit?.utf8.count ?? 0)
        for (key, value) in reading.labels { bytes += key.utf8.count + value.utf8.count + 6 }
        if case .text(let text) = reading.value { bytes += text.utf8.count }
        return bytes
    }
}
