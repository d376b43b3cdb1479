import Foundation

/// A Sparkplug 3.0 host application's STATE message: `spBv1.0/STATE/<host id>`, QoS 1,
/// retained, with the JSON payload `{"online":true|false,"timestamp":<ms since the epoch>}`.
///
/// The host registers `online: false` as its MQTT will, then publishes `online: true` with the
/// same timestamp once connected and subscribed. Edge nodes configured with this host as their
/// primary host wait for an online STATE before their births, and take an offline STATE as
/// the end of the host's session only when its timestamp is not older than the last online's
/// (an old session's will, delivered late, says nothing about the current one).
public struct SparkplugHostState: Sendable, Equatable, Codable {
    public var online: Bool
    public var timestamp: Int64

    public init(online: Bool, timestamp: Int64) {
        self.online = online
        self.timestamp = timestamp
    }

    /// `spBv1.0/STATE/<host id>`.
    public static func topic(hostID: String) -> String { "\(SparkplugTopic.namespace)/STATE/\(hostID)" }

    /// Why `hostID` cannot name a host application, or nil when it can: one topic level, not
    /// empty, without MQTT's wildcards.
    public static func problem(hostID: String) -> String? {
        if hostID.isEmpty { return "a host id cannot be empty" }
        if let bad = hostID.first(where: { "/+#".contains($0) }) {
            return "'\(hostID)' contains '\(bad)': a host id is one MQTT topic level, without '/', '+' or '#'"
        }
        if hostID.utf8.count > 1024 { return "a host id of \(hostID.utf8.count) bytes is too long (at most 1024)" }
        return nil
    }

    /// The host id a STATE topic names, or nil when `topic` is not one.
    public static func hostID(ofTopic topic: String) -> String? {
        let prefix = "\(SparkplugTopic.namespace)/STATE/"
        guard topic.hasPrefix(prefix) else { return nil }
        let id = String(topic.dropFirst(prefix.count))
        return problem(hostID: id) == nil ? id : nil
    }

    /// `{"online":true,"timestamp":1700000000000}`: the payload, in the specification's words.
    public var payload: [UInt8] { Array("{\"online\":\(online),\"timestamp\":\(timestamp)}".utf8) }

    /// Reads a STATE payload; nil when it is not one (not JSON, or missing either member).
    public init?(payload: some Collection<UInt8>) {
        guard let state = try? JSONDecoder().decode(Self.self, from: Data(payload)) else { return nil }
        self = state
    }
}
