/// Where a broker listens, from a URL such as `mqtt://127.0.0.1:1883` or `mqtts://broker:8883`.
public struct MQTTBroker: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int32
    /// `mqtts://`: the connection is TLS, and the broker's certificate must name `host`.
    public var tls: Bool

    public init(host: String, port: Int32, tls: Bool = false) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    public static let schemes = ["mqtt://", "mqtts://"]

    /// Parses `mqtt://HOST[:PORT]` (port 1883 when omitted) and `mqtts://HOST[:PORT]` (8883);
    /// a bare `HOST:PORT` is accepted too, as plain MQTT.
    public init(url: String) throws(MQTTBrokerURLError) {
        var rest = Substring(url)
        var tls = false
        if rest.hasPrefix("mqtts://") {
            rest = rest.dropFirst("mqtts://".count)
            tls = true
        } else if rest.hasPrefix("mqtt://") {
            rest = rest.dropFirst("mqtt://".count)
        } else if rest.contains("://") {
            throw .unsupportedScheme(url)
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        var host = rest
        var port: Int32 = tls ? 8883 : 1883
        if rest.hasPrefix("[") {  // [::1]:1883
            guard let close = rest.firstIndex(of: "]") else { throw .malformed(url) }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int32(after.dropFirst()), (1...65535).contains(p) else { throw .malformed(url) }
                port = p
            } else if !after.isEmpty {
                throw .malformed(url)
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = Int32(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { throw .malformed(url) }
            port = p
        }
        guard !host.isEmpty, !host.contains("/") else { throw .malformed(url) }
        self.host = String(host)
        self.port = port
        self.tls = tls
    }

    public var description: String { "\(tls ? "mqtts" : "mqtt")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

public enum MQTTBrokerURLError: Error, Sendable, Equatable, CustomStringConvertible {
    case unsupportedScheme(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .unsupportedScheme(let url):
            "broker URL '\(url)': supported schemes are \(MQTTBroker.schemes.joined(separator: " and ")) (TLS)"
        case .malformed(let url):
            "broker URL '\(url)' is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        }
    }
}
