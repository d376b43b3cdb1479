/// How an MQTT payload is turned into readings.
public enum PayloadFormat: String, Sendable, CaseIterable {
    /// A JSON document: scalars become readings named by their dotted path,
    /// nested objects are flattened, arrays of objects become several readings.
    case json
    /// A plain number (`21.5`, `-3`, `1e3`); the metric comes from the topic template.
    case number
}
