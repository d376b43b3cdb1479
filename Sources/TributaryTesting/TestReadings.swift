import TributaryCore

extension Reading {
    /// A reading for a test: every field has a plain default, so the test names only what it is
    /// about. `receivedAtMs` defaults to `timeMs`.
    public static func sample(gateway: String = "gw", sensor: String = "s", metric: String = "m", topic: String = "t",
                              timeMs: Int64 = 0, receivedAtMs: Int64? = nil, value: ReadingValue = .integer(0),
                              unit: String? = nil, labels: [String: String] = [:]) -> Reading {
        Reading(gatewayID: gateway, sensorID: sensor, metric: metric, topic: topic, timeMs: timeMs, receivedAtMs: receivedAtMs ?? timeMs,
                value: value, unit: unit, labels: labels)
    }

    /// `count` readings of one series, the i-th at time `start + i` with the integer value
    /// `start + i`: each one told apart from the others by its time and value.
    public static func series(_ count: Int, from start: Int = 0, gateway: String = "gw", sensor: String = "s",
                              metric: String = "m", topic: String = "t", labels: [String: String] = [:]) -> [Reading] {
        (start..<start + count).map {
            sample(gateway: gateway, sensor: sensor, metric: metric, topic: topic, timeMs: Int64($0), value: .integer(Int64($0)), labels: labels)
        }
    }
}
