import Foundation
import Logging
import TributaryClickHouse

// Every sink the aggregator can write to, in one place: a sink's URL scheme (`SinkURL`) and how
// it is made (`SinkURL.makeSink`). Adding a sink is a folder in this module and a case here.

/// A sink named by its URL: `sqlite:PATH`, `clickhouse://...`, `clickhouse+https://...`.
public enum SinkURL: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case clickhouse(ClickHouseEndpoint)

    public init(_ text: String) throws(SinkURLError) {
        if ClickHouseEndpoint.isClickHouseURL(text) {
            do {
                self = .clickhouse(try ClickHouseEndpoint(url: text))
            } catch {
                throw SinkURLError(text: "clickhouse URL", reason: error.description)
            }
        } else if text.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            guard !path.isEmpty else { throw SinkURLError(text: text, reason: "sqlite: needs a file path") }
            self = .sqlite(path: path)
        } else {
            throw SinkURLError(text: text, reason: "supported sinks: sqlite:PATH, clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE], clickhouse+https://...")
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .clickhouse(let endpoint): endpoint.description
        }
    }

    /// Where rows end up, whoever writes them: the SQLite file's absolute path, or
    /// ClickHouse's scheme, host, port and database (not the user or password).
    public var destination: String {
        switch self {
        case .sqlite(let path):
            "sqlite:" + URL(fileURLWithPath: path).standardizedFileURL.path
        case .clickhouse(let endpoint):
            ClickHouseEndpoint(secure: endpoint.secure, host: endpoint.host.lowercased(), port: endpoint.port, database: endpoint.database).description
        }
    }
}

public struct SinkURLError: Error, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "sink '\(text)': \(reason)" }
}

extension SinkURL {
    /// The sink this URL names, with the configuration's settings for it.
    public func makeSink(clickHouse: ClickHouseSink.Settings, logger: Logger) throws -> any Sink {
        switch self {
        case .sqlite(let path):
            try SQLiteSink(path: path)
        case .clickhouse(let endpoint):
            ClickHouseSink(endpoint: endpoint, settings: clickHouse, logger: logger)
        }
    }
}
