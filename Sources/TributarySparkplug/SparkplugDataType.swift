import TributaryCore

/// Sparkplug B metric datatypes (`Metric.datatype`) and how their values become reading values.
public enum SparkplugDataType: UInt32, Sendable, CaseIterable, Codable {
    case int8 = 1, int16, int32, int64, uint8, uint16, uint32, uint64
    case float = 9, double, boolean, string, dateTime, text, uuid
    case dataSet = 16, bytes, file, template

    /// What a metric's value says, read by its datatype.
    public enum Value: Sendable, Equatable {
        case value(ReadingValue)
        /// `is_null`, or no value at all: nothing to store, as with JSON's null.
        case none
        /// A type Tributary does not store (data sets, templates, bytes, files) or a value of
        /// the wrong kind for its datatype: counted, never stored as something else.
        case unsupported(String)
    }

    /// The reading value of `metric`, read as this datatype. Signed integers travel as two's
    /// complement in the unsigned fields; a UInt64 above Int64.max becomes a double.
    public func value(of metric: SparkplugB_Payload.Metric) -> Value {
        if metric.isNull { return .none }
        guard let raw = metric.value else { return .none }
        switch (self, raw) {
        case (.int8, .intValue(let v)): return .value(.integer(Int64(Int8(truncatingIfNeeded: v))))
        case (.int16, .intValue(let v)): return .value(.integer(Int64(Int16(truncatingIfNeeded: v))))
        case (.int32, .intValue(let v)): return .value(.integer(Int64(Int32(bitPattern: v))))
        case (.uint8, .intValue(let v)), (.uint16, .intValue(let v)), (.uint32, .intValue(let v)):
            return .value(.integer(Int64(v)))
        // Eclipse Tahu's encoders, and Ignition with them, send UInt32 in long_value.
        case (.uint32, .longValue(let v)):
            return v <= UInt64(UInt32.max) ? .value(.integer(Int64(v))) : .unsupported("UInt32 value \(v) out of range")
        case (.int64, .longValue(let v)), (.dateTime, .longValue(let v)): return .value(.integer(Int64(bitPattern: v)))
        case (.uint64, .longValue(let v)): return .value(v <= UInt64(Int64.max) ? .integer(Int64(v)) : .double(Double(v)))
        case (.float, .floatValue(let v)): return v.isFinite ? .value(.double(Double(v))) : .unsupported("a non-finite float")
        case (.double, .doubleValue(let v)): return v.isFinite ? .value(.double(v)) : .unsupported("a non-finite double")
        case (.boolean, .booleanValue(let v)): return .value(.boolean(v))
        case (.string, .stringValue(let v)), (.text, .stringValue(let v)), (.uuid, .stringValue(let v)):
            return .value(.text(v))
        case (.dataSet, _), (.bytes, _), (.file, _), (.template, _):
            return .unsupported("datatype \(self) is not stored")
        default:
            return .unsupported("a \(raw.kindName) value for datatype \(self)")
        }
    }

    /// Puts `value` on `metric` in the field this datatype uses (for edge nodes and tests).
    public func set(_ value: ReadingValue, on metric: inout SparkplugB_Payload.Metric) {
        metric.datatype = rawValue
        switch (self, value) {
        case (.int8, .integer(let i)), (.int16, .integer(let i)), (.int32, .integer(let i)):
            metric.intValue = UInt32(bitPattern: Int32(truncatingIfNeeded: i))
        case (.uint8, .integer(let i)), (.uint16, .integer(let i)), (.uint32, .integer(let i)):
            metric.intValue = UInt32(truncatingIfNeeded: i)
        case (.int64, .integer(let i)), (.uint64, .integer(let i)), (.dateTime, .integer(let i)):
            metric.longValue = UInt64(bitPattern: i)
        case (.float, .double(let d)): metric.floatValue = Float(d)
        case (.double, .double(let d)): metric.doubleValue = d
        case (.boolean, .boolean(let b)): metric.booleanValue = b
        case (.string, .text(let t)), (.text, .text(let t)), (.uuid, .text(let t)): metric.stringValue = t
        default: preconditionFailure("\(value) cannot be written as a Sparkplug \(self)")
        }
    }
}

extension SparkplugB_Payload.Metric.OneOf_Value {
    var kindName: String {
        switch self {
        case .intValue: "int_value"
        case .longValue: "long_value"
        case .floatValue: "float_value"
        case .doubleValue: "double_value"
        case .booleanValue: "boolean_value"
        case .stringValue: "string_value"
        case .bytesValue: "bytes_value"
        }
    }
}
