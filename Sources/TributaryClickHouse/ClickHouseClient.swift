import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// A small client for ClickHouse's HTTP interface, limited to what both Debian's 18.16 and
/// current releases understand: SQL in the `query` parameter or the body, data in
/// TabSeparated, HTTP basic authentication, settings as URL parameters. Statements name their
/// tables with the database (`tributary.readings`).
public final class ClickHouseClient: Sendable {
    public let endpoint: ClickHouseEndpoint
    private let http: HTTPClient
    private let ownsHTTPClient: Bool
    private let timeout: TimeAmount

    /// `timeout` bounds each request, from connect to the last byte of the answer. With TLS
    /// (`clickhouse+https`), the server's certificate is checked against `caFile` (PEM) when
    /// given, else against the system's trusted roots.
    public init(endpoint: ClickHouseEndpoint, timeout: Duration = .seconds(30), caFile: String? = nil, http: HTTPClient? = nil) {
        self.endpoint = endpoint
        self.timeout = .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        if let http {
            self.http = http
            ownsHTTPClient = false
        } else {
            var configuration = HTTPClient.Configuration()
            // A refused connection must come back at once as "unreachable", not wait in the
            // pool until the deadline: the aggregator turns it into a 503 for the agents.
            configuration.connectionPool.retryConnectionEstablishment = false
            // ClickHouse closes idle connections after 3 s (keep_alive_timeout): drop them first,
            // or a request now and then meets a closed connection.
            configuration.connectionPool.idleTimeout = .seconds(2)
            if let caFile {
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .file(caFile)
                configuration.tlsConfiguration = tls
            }
            self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            ownsHTTPClient = true
        }
    }

    public func shutdown() async {
        if ownsHTTPClient { try? await http.shutdown() }
    }

    /// Runs a statement that returns nothing (DDL, `INSERT ... VALUES`).
    public func execute(_ sql: String, settings: [String: String] = [:]) async throws(ClickHouseError) {
        _ = try await send(query: nil, body: Array(sql.utf8), settings: settings, maxResponseBytes: 1 << 20)
    }

    /// `INSERT INTO table (columns) FORMAT F` with `rows` as its data, in format F
    /// (`TabSeparated.Writer` or `RowBinary.Writer` bytes), compressed by the caller when
    /// `contentEncoding` names how (`gzip`, `zstd`: see `acceptsContentEncoding`).
    public func insert(_ sql: String, rows: [UInt8], settings: [String: String] = [:], contentEncoding: String? = nil) async throws(ClickHouseError) {
        _ = try await send(query: sql, body: rows, settings: settings, contentEncoding: contentEncoding, maxResponseBytes: 1 << 20)
    }

    /// Whether the server decodes request bodies in `contentEncoding`: `selectOne` is
    /// `SELECT 1` compressed that way, sent as the body; a server that takes the encoding
    /// answers 1, one that does not refuses it (18.16 knows gzip, deflate and br, not zstd:
    /// code 89). False too when the server cannot be asked.
    public func acceptsContentEncoding(_ contentEncoding: String, selectOne: [UInt8]) async -> Bool {
        guard let answer = try? await send(query: nil, body: selectOne, settings: [:], contentEncoding: contentEncoding, maxResponseBytes: 1024) else {
            return false
        }
        return String(buffer: answer).trimmingCharacters(in: .whitespacesAndNewlines) == "1"
    }

    /// Runs a SELECT and returns its rows (the statement must not name a FORMAT).
    public func select(_ sql: String, settings: [String: String] = [:], maxResponseBytes: Int = 256 << 20) async throws(ClickHouseError) -> [[String?]] {
        let bytes = try await send(query: nil, body: Array((sql + " FORMAT TabSeparated").utf8), settings: settings,
                                   maxResponseBytes: maxResponseBytes)
        return TabSeparated.parse(bytes.readableBytesView)
    }

    /// The first field of the first row, e.g. `SELECT count() ...`.
    public func scalar(_ sql: String) async throws(ClickHouseError) -> String? {
        try await select(sql).first?.first ?? nil
    }

    private func send(query: String?, body: [UInt8], settings: [String: String], contentEncoding: String? = nil,
                      maxResponseBytes: Int) async throws(ClickHouseError) -> ByteBuffer {
        guard var components = URLComponents(string: endpoint.baseURL) else {
            throw ClickHouseError(.unreachable, "ClickHouse at \(endpoint): not a valid address")
        }
        // No `database` parameter: ClickHouse would refuse every statement, even
        // `CREATE DATABASE`, while the database is missing. Statements name it themselves.
        var items: [URLQueryItem] = []
        if let query { items.append(URLQueryItem(name: "query", value: query)) }
        for (name, value) in settings.sorted(by: { $0.key < $1.key }) { items.append(URLQueryItem(name: name, value: value)) }
        components.queryItems = items
        // '+' in a query parameter is a space to ClickHouse, as in a form.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        guard let url = components.string else { throw ClickHouseError(.unreachable, "ClickHouse at \(endpoint): not a valid address") }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        if let contentEncoding { request.headers.add(name: "Content-Encoding", value: contentEncoding) }
        if let user = endpoint.user {
            let credentials = Data("\(user):\(endpoint.password ?? "")".utf8).base64EncodedString()
            request.headers.add(name: "Authorization", value: "Basic \(credentials)")
        }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        let answer: ByteBuffer
        do {
            response = try await http.execute(request, timeout: timeout)
            answer = try await response.body.collect(upTo: maxResponseBytes)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw ClickHouseError(.timeout, "ClickHouse at \(endpoint) did not answer within \(timeout.nanoseconds / 1_000_000) ms")
        } catch let error as NIOSSLError {
            throw ClickHouseError(.tls, "TLS with ClickHouse at \(endpoint) failed (is clickhouse.ca_file the CA that signed its certificate?): \(error)")
        } catch {
            throw ClickHouseError(.unreachable, "ClickHouse at \(endpoint) is unreachable: \(error)")
        }
        guard response.status == .ok else {
            throw ClickHouseError(status: Int(response.status.code), body: String(buffer: answer), endpoint: endpoint)
        }
        return answer
    }
}

public struct ClickHouseError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No connection (down, restarting, wrong address): try again later.
        case unreachable
        /// No complete answer in time: the statement may or may not have run.
        case timeout
        /// The server refused the user or password: a configuration problem.
        case authentication
        /// The TLS handshake failed (untrusted or expired certificate, wrong name): a configuration problem.
        case tls
        /// The server refused the statement (unknown database, no permission, bad data...).
        case server
    }
    public let kind: Kind
    /// ClickHouse's exception code, when the server sent one (e.g. 193, wrong password).
    public let code: Int?
    public let message: String

    public init(_ kind: Kind, _ message: String, code: Int? = nil) {
        self.kind = kind
        self.message = message
        self.code = code
    }

    /// Codes of authentication failures across releases: unknown user, wrong password,
    /// required password, authentication failed.
    static let authenticationCodes: Set<Int> = [192, 193, 194, 516]

    /// From an error answer. 18.16 writes `Code: 193, e.displayText() = DB::Exception: Wrong
    /// password for user x, e.what() = DB::Exception`; newer releases `Code: 516. DB::Exception:
    /// x: Authentication failed ... (AUTHENTICATION_FAILED) (version ...)`.
    init(status: Int, body: String, endpoint: ClickHouseEndpoint) {
        let (code, text) = Self.parse(body)
        let kind: Kind = status == 401 || status == 403 || code.map(Self.authenticationCodes.contains) == true ? .authentication : .server
        let shown = text.isEmpty ? "HTTP \(status)" : text
        self.init(kind, kind == .authentication
                  ? "ClickHouse at \(endpoint) refused the credentials of user '\(endpoint.user ?? "default")': \(shown)"
                  : "ClickHouse at \(endpoint) refused the statement (HTTP \(status)): \(shown)", code: code)
    }

    /// The exception code and a one-line message from an error body.
    static func parse(_ body: String) -> (code: Int?, text: String) {
        var text = body.trimmingCharacters(in: .whitespacesAndNewlines)
        var code: Int?
        if text.hasPrefix("Code: ") {
            let digits = text.dropFirst(6).prefix { $0.isNumber }
            code = Int(digits)
            text = String(text.dropFirst(6 + digits.count)).trimmingCharacters(in: CharacterSet(charactersIn: ",. "))
            if text.hasPrefix("e.displayText() = ") { text = String(text.dropFirst("e.displayText() = ".count)) }
            if let what = text.range(of: ", e.what() = ") { text = String(text[..<what.lowerBound]) }
            if let stack = text.range(of: "Stack trace") { text = String(text[..<stack.lowerBound]) }
        }
        text = text.replacingOccurrences(of: "\n", with: " ").trimmingCharacters(in: .whitespaces)
        if text.count > 500 { text = String(text.prefix(500)) + "..." }
        return (code, code.map { "code \($0): \(text)" } ?? text)
    }

    public var description: String { message }
}

extension ClickHouseClient {
    /// `text` as a quoted ClickHouse string literal.
    public static func quote(_ text: String) -> String {
        var quoted = "'"
        for character in text.unicodeScalars {
            switch character {
            case "\\": quoted += "\\\\"
            case "'": quoted += "\\'"
            case "\n": quoted += "\\n"
            case "\t": quoted += "\\t"
            case "\r": quoted += "\\r"
            case "\0": quoted += "\\0"
            default: quoted.unicodeScalars.append(character)
            }
        }
        return quoted + "'"
    }
}
