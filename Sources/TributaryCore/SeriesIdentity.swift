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

    /// True when `a` and `b` are surely of one series: the same bytes in each part, and no
    /// labels on either. False says only "not known to be": labelled readings are compared by
    /// building their identities. A decoded batch lists each series' readings one after the
    /// other, with the same strings, so this spares a sink the key and the hash per reading.
    public static func surelySame(_ a: Reading, _ b: Reading) -> Bool {
        a.labels.isEmpty && b.labels.isEmpty
            && sameBytes(a.sensorID, b.sensorID) && sameBytes(a.metric, b.metric) && sameBytes(a.gatewayID, b.gatewayID)
            && sameBytes(a.topic, b.topic) && sameBytes(a.unit ?? "", b.unit ?? "")
    }
}
