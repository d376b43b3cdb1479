import Foundation

/// Where a ClickHouse server's HTTP interface is, and who to be there:
/// `clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE]` for plain HTTP (port 8123 by default),
/// `clickhouse+https://...` for TLS (port 8443). The database defaults to `tributary`.
public struct ClickHouseEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var secure: Bool
    public var host: String
    public var port: Int
    public var database: String
    public var user: String?
    public var password: String?

    public init(secure: Bool = false, host: String, port: Int? = nil, database: String = "tributary",
                user: String? = nil, password: String? = nil) {
        self.secure = secure
        self.host = host
        self.port = port ?? (secure ? 8443 : 8123)
        self.database = database
        self.user = user
        self.password = password
    }

    public static let schemes = ["clickhouse", "clickhouse+https"]

    public static func isClickHouseURL(_ text: String) -> Bool {
        schemes.contains { text.hasPrefix($0 + "://") }
    }

    public init(url text: String) throws(ClickHouseURLError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme, Self.schemes.contains(scheme) else {
            throw ClickHouseURLError(text: text, reason: "expected clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE] or clickhouse+https://..."
                                     + " (percent-encode /, ?, #, @ and : in a password, or put it in the config's clickhouse.password)")
        }
        guard let host = components.host, !host.isEmpty,
              host.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || ".-_:[]".unicodeScalars.contains($0) }) else {
            throw ClickHouseURLError(text: text, reason: "no valid host")
        }
        // A password with an unencoded '/', '#' or '?' ends the authority early: the rest of
        // it lands in the path or fragment, and the host would be wrong.
        if components.fragment != nil || components.path.contains("@") {
            throw ClickHouseURLError(text: text, reason: "'#' or '@' after the host: percent-encode the password (or use clickhouse.password)")
        }
        if let query = components.query, !query.isEmpty {
            throw ClickHouseURLError(text: text, reason: "query parameters are not supported; put settings in the config file's clickhouse: section")
        }
        var database = components.path
        if database.hasPrefix("/") { database.removeFirst() }
        if database.isEmpty { database = "tributary" }
        guard Self.isIdentifier(database) else {
            throw ClickHouseURLError(text: text, reason: "database '\(database)' must be letters, digits and _, not starting with a digit")
        }
        self.init(secure: scheme == "clickhouse+https", host: host, port: components.port, database: database,
                  user: components.user.flatMap { $0.isEmpty ? nil : $0 }, password: components.password)
    }

    /// The server's HTTP base address, without credentials.
    public var baseURL: String {
        "\(secure ? "https" : "http")://\(hostInURL):\(port)/"
    }

    /// For logs and the fleet view: never shows the password.
    public var description: String {
        "\(secure ? "clickhouse+https" : "clickhouse")://\(user.map { $0 + "@" } ?? "")\(hostInURL):\(port)/\(database)"
    }

    /// The host as a URL writes it: an IPv6 address in brackets.
    private var hostInURL: String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
    }

    /// ClickHouse identifiers Tributary accepts unquoted.
    public static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}

public struct ClickHouseURLError: Error, Sendable, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String {
        // The text may hold a password: show it without.
        let shown = ClickHouseEndpoint.redacted(text)
        return "'\(shown)': \(reason)"
    }
}

extension ClickHouseEndpoint {
    /// `text` with everything between `://` and the last `@` (user and password) replaced, so
    /// no password shows, however it is mangled.
    static func redacted(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://"), let at = text.range(of: "@", options: .backwards),
              at.lowerBound > schemeEnd.upperBound else { return text }
        return String(text[..<schemeEnd.upperBound]) + "***" + String(text[at.lowerBound...])
    }
}
