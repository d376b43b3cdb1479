/// One measurement from one sensor, as the agent buffers it and the sink stores it.
public struct Reading: Sendable, Hashable {
    public var gatewayID: String
    public var sensorID: String
    public var metric: String
    /// The MQTT topic the reading arrived on.
    public var topic: String
    /// Event time in ms since the Unix epoch: from the payload when it has one, else `receivedAtMs`.
    public var timeMs: Int64
    /// When the agent received the message, ms since the Unix epoch.
    public var receivedAtMs: Int64
    public var value: ReadingValue
    public var unit: String?
    public var labels: [String: String]

    public init(
        gatewayID: String, sensorID: String, metric: String, topic: String,
        timeMs: Int64, receivedAtMs: Int64, value: ReadingValue,
        unit: String? = nil, labels: [String: String] = [:]
    ) {
        self.gatewayID = gatewayID
        self.sensorID = sensorID
        self.metric = metric
        self.topic = topic
        self.timeMs = timeMs
        self.receivedAtMs = receivedAtMs
        self.value = value
        self.unit = unit
        self.labels = labels
    }
}

/// A reading's value, with its type kept: numbers stay numbers, counters stay integers.
public enum ReadingValue: Sendable, Hashable {
    case double(Double)
    case integer(Int64)
    case boolean(Bool)
    case text(String)

    /// The name stored in the sink's `value_type` column.
    public var typeName: String {
        switch self {
        case .double: "number"
        case .integer: "integer"
        case .boolean: "boolean"
        case .text: "text"
        }
    }

    /// The numeric value for the sink's `value` column: numbers and integers, nil otherwise.
    public var numericValue: Double? {
        switch self {
        case .double(let d): d
        case .integer(let i): Double(i)
        case .boolean, .text: nil
        }
    }

    /// The exact integer for the sink's `value_int` column: integers, and booleans as 0/1.
    public var exactIntegerValue: Int64? {
        switch self {
        case .integer(let i): i
        case .boolean(let b): b ? 1 : 0
        case .double, .text: nil
        }
    }

    /// The text for the sink's `value_text` column.
    public var textValue: String? {
        if case .text(let t) = self { t } else { nil }
    }
}
