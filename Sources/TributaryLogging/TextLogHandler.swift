import Foundation
import Logging
import TributaryCore

/// Lines for people, as swift-log's `StreamLogHandler` writes them (`TIME LEVEL LABEL: k=v ...
/// [SOURCE] MESSAGE`), except that every control character and bidirectional override in the
/// message and the metadata is shown as an escape: gateway ids, epochs, topics and reasons come
/// from clients, and one of them carrying a newline or an ESC sequence must not start a forged
/// line or drive the operator's terminal.
public struct TextLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        write(Self.line(level: event.level, label: label, message: "\(event.message)", metadata: fields, source: event.source,
                        timestamp: Self.timestamp()))
    }

    public static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, source: String,
                            timestamp: String) -> String {
        let pairs = metadata.keys.sorted().map { "\(Printable.escaped($0))=\(value("\(metadata[$0]!)"))" }
        let fields = pairs.isEmpty ? "" : " " + pairs.joined(separator: " ")
        return "\(timestamp) \(level) \(label):\(fields) [\(source)] \(Printable.escaped(message))\n"
    }

    /// A metadata value, escaped, and quoted when it holds a space, `=` or `"`: an epoch of
    /// `e status=200 reason=accepted` must stay one value, not become fields a log parser reads.
    static func value(_ text: String) -> String {
        let escaped = Printable.escaped(text)
        guard escaped.contains(where: { $0 == " " || $0 == "=" || $0 == "\"" }) else { return escaped }
        return "\"" + escaped.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// Local time with its offset, as `StreamLogHandler` writes it.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [Int8](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
