import Foundation
import Logging
import TributaryCore

/// One JSON object per line on stderr: `ts`, `level`, `label`, `msg`, then the metadata (gateway,
/// topic, batch ...) as top-level string members, so a log shipper can filter on them.
public struct JSONLogHandler: LogHandler {
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
        write(Self.line(level: event.level, label: label, message: "\(event.message)", metadata: fields, date: Date()))
    }

    /// The line for one event; fixed members come first, metadata after in key order.
    public static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, date: Date) -> String {
        var out = "{\"ts\":\(quote(timestamp(date))),\"level\":\(quote(level.rawValue)),\"label\":\(quote(label)),\"msg\":\(quote(message))"
        for key in metadata.keys.sorted() where !["ts", "level", "label", "msg"].contains(key) {
            out += ",\(quote(key)):\(quote("\(metadata[key]!)"))"
        }
        return out + "}\n"
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// UTC, millisecond precision: 2026-11-23T08:15:02.123Z.
    static func timestamp(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }

    static func quote(_ text: String) -> String { JSONValue.quoted(text) }
}
