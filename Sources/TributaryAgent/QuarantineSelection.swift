import TributaryBuffer
import TributaryCore
import TributaryRuntime

/// The quarantined payloads a command asks for (`--topic`, `--since`), read in steps of 500 so
/// a large quarantine is never held in memory whole.
public struct QuarantineSelection: Sendable {
    public let topic: TopicFilter?
    public let sinceMs: Int64?

    public init(topic: String?, since: String?, nowMs: Int64 = WallClock.nowMs()) throws(OperatorError) {
        self.topic = OperatorInput.topic(topic)
        if let since {
            guard let ms = OperatorTime.pointMs(since, nowMs: nowMs) else {
                throw OperatorError("--since '\(since)' is neither an ISO 8601 time (2026-12-06T10:00:00Z) nor a duration (2h, 7d)")
            }
            sinceMs = ms
        } else {
            sinceMs = nil
        }
    }

    public func matches(_ entry: QuarantineEntry) -> Bool {
        (topic?.matches(entry.topic) ?? true) && entry.receivedAtMs >= (sinceMs ?? .min)
    }

    /// Calls `body` with each selected entry, oldest first, while it returns true.
    public func scan(_ reader: BufferReader, _ body: (QuarantineEntry) throws -> Bool) throws {
        var afterID: Int64 = 0
        while true {
            let page = try reader.quarantineEntries(afterID: afterID, limit: 500)
            guard let last = page.last else { return }
            afterID = last.id
            for entry in page where matches(entry) {
                guard try body(entry) else { return }
            }
        }
    }

    /// The first `limit` selected entries (all when nil).
    public func entries(_ reader: BufferReader, limit: Int?) throws -> [QuarantineEntry] {
        var found: [QuarantineEntry] = []
        try scan(reader) { entry in
            found.append(entry)
            return limit.map { found.count < $0 } ?? true
        }
        return found
    }
}

/// What the commands' options become.
public enum OperatorInput {
    /// An MQTT topic filter (`plant/+/boiler`, `plant/#`).
    public static func topic(_ text: String?) -> TopicFilter? { text.map(TopicFilter.init) }

    /// A duration option in ms, or an error naming the option.
    public static func durationMs(_ text: String, option: String) throws(OperatorError) -> Int64 {
        guard let ms = OperatorTime.durationMs(text) else {
            throw OperatorError("\(option) '\(text)' is not a duration: use e.g. 90s, 30m, 12h, 7d, 2w")
        }
        return ms
    }

    public static func nowMs() -> Int64 { WallClock.nowMs() }
}
