/// Where a broker listens, from a URL such as `mqtt://127.0.0.1:1883`.
public struct MQTTBroker: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int32

    public init(host: String, port: Int32) {
        self.host = host
        self.port = port
    }

    /// Parses `mqtt://HOST[:PORT]` (port 1883 when omitted); a bare `HOST:PORT` is accepted too.
    public init(url: String) throws(MQTTBrokerURLError) {
        var rest = Substring(url)
        if rest.hasPrefix("mqtt://") {
            rest = rest.dropFirst("mqtt://".count)
        } else if rest.contains("://") {
            throw .unsupportedScheme(url)
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        var host = rest
        var port: Int32 = 1883
        if rest.hasPrefix("[") {  // [::1]:1883
            guard let close = rest.firstIndex(of: "]") else { throw .malformed(url) }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int32(after.dropFirst()), (1...65535).contains(p) else { throw .malformed(url) }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = Int32(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { throw .malformed(url) }
            port = p
        }
        guard !host.isEmpty, !host.contains("/") else { throw .malformed(url) }
        self.host = String(host)
        self.port = port
    }

    public var description: String { "mqtt://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

public enum MQTTBrokerURLError: Error, Sendable, Equatable, CustomStringConvertible {
    case unsupportedScheme(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .unsupportedScheme(let url): "broker URL '\(url)': only mqtt:// is supported"
        case .malformed(let url): "broker URL '\(url)' is not mqtt://HOST:PORT"
        }
    }
}
