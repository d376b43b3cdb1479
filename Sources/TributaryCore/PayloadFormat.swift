/// How an MQTT payload is turned into readings.
public enum PayloadFormat: String, Sendable, CaseIterable {
    /// A JSON document: scalars become readings named by their dotted path,
    /// nested objects are flattened, arrays of objects become several readings.
    case json
    /// A plain number (`21.5`, `-3`, `1e3`); the metric comes from the topic template.
    case number
    /// Sparkplug B (`spBv1.0/...` topics, protobuf payloads). Decoding it needs each edge
    /// node's session (births, aliases, seq), so the agent's `SparkplugHost` does it, not
    /// `PayloadDecoder`; the topic namespace is fixed, so it takes no template.
    case sparkplug
}
