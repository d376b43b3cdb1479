/// What makes a reading's series: its gateway, sensor, metric, topic, unit and labels, each
/// compared byte for byte (`ExactString`), as the wire and the sinks compare them. The one key
/// the batch encoder, its cost and the SQLite sink group readings by.
public struct SeriesIdentity: Hashable, Sendable {
    public let gateway: ExactString, sensor: ExactString, metric: ExactString, topic: ExactString, unit: ExactString
    /// Keys and values in turn, in the order of the keys' bytes.
    public let labels: [ExactString]

    public init(_ r: Reading) {
        gateway = ExactString(r.gatewayID)
        sensor = ExactString(r.sensorID)
        metric = ExactString(r.metric)
        topic = ExactString(r.topic)
        unit = ExactString(r.unit ?? "")
        labels = r.labels.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            .flatMap { [ExactString($0.key), ExactString($0.value)] }
    }
}
