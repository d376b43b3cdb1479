/// Turns one MQTT message into readings, following one subscription's rules:
/// the topic template names the gateway, sensor and metric; the format says how to read the
/// payload; the optional time field says where the event time is.
public struct PayloadDecoder: Sendable {
    public let format: PayloadFormat
    public let template: TopicTemplate
    public let timeField: String?
    /// The zone of the time field's ISO 8601 times that carry none; nil refuses them.
    public let timeZone: PayloadTimeZone?
    /// Used when the template has no `{gateway}`.
    public let defaultGatewayID: String

    public init(format: PayloadFormat, template: TopicTemplate, timeField: String?, timeZone: PayloadTimeZone? = nil,
                defaultGatewayID: String) throws(PayloadDecoderConfigError) {
        guard format != .sparkplug else { throw .sessionFormat(format) }
        guard template.captures.contains(.sensor) else { throw .missingSensor(template: template.description) }
        if format == .number, !template.captures.contains(.metric) {
            throw .numberNeedsMetric(template: template.description)
        }
        self.format = format
        self.template = template
        self.timeField = timeField
        self.timeZone = timeZone
        self.defaultGatewayID = defaultGatewayID
    }

    public func decode(topic: String, payload: some Collection<UInt8>, receivedAtMs: Int64) throws(PayloadError) -> [Reading] {
        try decodeMessage(topic: topic, payload: payload, receivedAtMs: receivedAtMs).readings
    }

    /// The readings, and whether the payload carried its own event time (then the same payload
    /// again is the same readings again, not new ones).
    public func decodeMessage(topic: String, payload: some Collection<UInt8>, receivedAtMs: Int64) throws(PayloadError) -> (readings: [Reading], carriesEventTime: Bool) {
        guard let fields = template.match(topic) else {
            throw .topicMismatch(topic: topic, template: template.description)
        }
        guard !payload.isEmpty else { throw .empty }
        let base = Reading(
            gatewayID: fields[.gateway] ?? defaultGatewayID, sensorID: fields[.sensor]!,
            metric: fields[.metric] ?? "", topic: topic,
            timeMs: receivedAtMs, receivedAtMs: receivedAtMs, value: .integer(0))
        switch format {
        case .number:
            return ([try decodeNumber(payload, base: base)], false)
        case .sparkplug:
            preconditionFailure("init refuses the sparkplug format")
        case .json:
            var readings: [Reading] = []
            var carriesEventTime = false
            try flatten(JSONValue.parse(payload), path: fields[.metric], time: receivedAtMs, base: base,
                        into: &readings, sawTime: &carriesEventTime)
            guard !readings.isEmpty else { throw .noReadings }
            return (readings, carriesEventTime)
        }
    }

    private func decodeNumber(_ payload: some Collection<UInt8>, base: Reading) throws(PayloadError) -> Reading {
        guard let text = String(validating: payload, as: UTF8.self) else { throw .notUTF8 }
        let trimmed = text.trimmingASCIIWhitespace()
        var reading = base
        if let integer = Int64(trimmed) {
            reading.value = .integer(integer)
        } else if let double = Double(trimmed), double.isFinite, trimmed.first != "+" {
            reading.value = .double(double)
        } else {
            throw .notANumber(trimmed)
        }
        return reading
    }

    /// Walks a JSON value: scalars become readings named by their dotted path (under the
    /// template's metric when it has one; a member named `value` takes the parent's name),
    /// objects recurse, arrays of objects become several records, each with its own time field.
    private func flatten(_ value: JSONValue, path: String?, time: Int64, base: Reading, into readings: inout [Reading], sawTime: inout Bool) throws(PayloadError) {
        func emit(_ value: ReadingValue) {
            var reading = base
            reading.metric = path ?? "value"
            reading.timeMs = time
            reading.value = value
            readings.append(reading)
        }
        switch value {
        case .null:
            return  // a device saying "no value" is not a reading
        case .bool(let b): emit(.boolean(b))
        case .integer(let i): emit(.integer(i))
        case .double(let d): emit(.double(d))
        case .string(let s): emit(.text(s))
        case .array(let elements):
            for (offset, element) in elements.enumerated() {
                if case .object = element {
                    try flatten(element, path: path, time: time, base: base, into: &readings, sawTime: &sawTime)
                } else {
                    try flatten(element, path: join(path, String(offset)), time: time, base: base, into: &readings, sawTime: &sawTime)
                }
            }
        case .object(let members):
            var ownTime = time
            if let timeField, let stamp = members.first(where: { $0.0 == timeField })?.1 {
                ownTime = try eventTime(stamp)
                sawTime = true
            }
            for (key, member) in members where key != timeField {
                let childPath = key == "value" ? (path ?? key) : join(path, key)
                try flatten(member, path: childPath, time: ownTime, base: base, into: &readings, sawTime: &sawTime)
            }
        }
    }

    private func join(_ path: String?, _ key: String) -> String {
        guard let path, !path.isEmpty else { return key }
        return path + "." + key
    }

    func eventTime(_ stamp: JSONValue) throws(PayloadError) -> Int64 {
        switch stamp {
        case .integer(let i): return try Timestamp.epochMs(fromInteger: i)
        case .double(let d): return try Timestamp.epochMs(fromNumber: d)
        case .string(let s):
            if let i = Int64(s) { return try Timestamp.epochMs(fromInteger: i) }
            return try Timestamp.epochMs(fromISO8601: s, assumedZone: timeZone)
        default: throw .invalidTimestamp("the time field must be a number or an ISO 8601 string")
        }
    }
}

/// A subscription whose rules cannot work, found when the configuration is loaded.
public enum PayloadDecoderConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    case missingSensor(template: String)
    case numberNeedsMetric(template: String)
    case sessionFormat(PayloadFormat)
    case missingTemplate(format: PayloadFormat)

    public var description: String {
        switch self {
        case .missingSensor(let t): "template '\(t)' has no {sensor}: every reading needs a sensor id"
        case .numberNeedsMetric(let t): "format 'number' needs {metric} in the template ('\(t)' has none)"
        case .sessionFormat(let f): "format '\(f.rawValue)' is decoded with its session state, not by PayloadDecoder"
        case .missingTemplate(let f): "format '\(f.rawValue)' needs a topic template"
        }
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = lastIndex(where: { !isSpace($0) })!
        return String(self[first...last])
    }
}
