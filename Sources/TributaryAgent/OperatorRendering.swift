import Foundation
import TributaryBuffer
import TributaryCore

/// How `tributary-agent quarantine` and `set-aside` print: aligned tables for people, and with
/// `--json` one JSON document (list, show, replay, purge, retry) or JSON Lines (export) for
/// scripts. Text from devices (topics, payloads, reasons) is made safe for a terminal.
public enum OperatorRendering {
    // MARK: JSON shapes

    public struct QuarantineJSON: Encodable {
        var id: Int64
        var topic: String
        var reason: String
        var receivedMs: Int64
        var receivedAt: String
        var payloadBytes: Int
        var payloadText: String?
        var payloadBase64: String?

        enum CodingKeys: String, CodingKey {
            case id, topic, reason
            case receivedMs = "received_ms"
            case receivedAt = "received_at"
            case payloadBytes = "payload_bytes"
            case payloadText = "payload_text"
            case payloadBase64 = "payload_base64"
        }

        /// With `payload`, the bytes as base64 and, when they are UTF-8, as text.
        public init(_ entry: QuarantineEntry, payload: Bool) {
            id = entry.id
            topic = entry.topic
            reason = entry.reason
            receivedMs = entry.receivedAtMs
            receivedAt = OperatorRendering.time(entry.receivedAtMs)
            payloadBytes = entry.payload.count
            if payload {
                payloadBase64 = Data(entry.payload).base64EncodedString()
                payloadText = String(validating: entry.payload, as: UTF8.self)
            }
        }
    }

    public struct SetAsideJSON: Encodable {
        var sequence: UInt64
        var epoch: String
        var readings: Int
        var attempts: Int
        var lastError: String
        var sealedMs: Int64
        var oldestReceivedMs: Int64
        var oldestReceivedAt: String
        var payloadBytes: Int
        var contents: [ReadingJSON]?
        var contentsError: String?

        enum CodingKeys: String, CodingKey {
            case sequence, epoch, readings, attempts, contents
            case lastError = "last_error"
            case sealedMs = "sealed_ms"
            case oldestReceivedMs = "oldest_received_ms"
            case oldestReceivedAt = "oldest_received_at"
            case payloadBytes = "payload_bytes"
            case contentsError = "contents_error"
        }

        /// With `contents`, the batch's readings, decoded.
        public init(_ batch: SetAsideBatch, contents: Bool) {
            sequence = batch.sequence
            epoch = batch.epoch
            readings = batch.readingCount
            attempts = batch.attempts
            lastError = batch.lastError
            sealedMs = batch.sealedAtMs
            oldestReceivedMs = batch.oldestReceivedMs
            oldestReceivedAt = OperatorRendering.time(batch.oldestReceivedMs)
            payloadBytes = batch.payload.count
            if contents {
                do {
                    self.contents = try batch.readings().map(ReadingJSON.init)
                } catch {
                    contentsError = "the stored batch does not decode: \(error)"
                }
            }
        }
    }

    public struct ReadingJSON: Encodable {
        var sensor: String
        var metric: String
        var topic: String
        var timeMs: Int64
        var receivedMs: Int64
        var type: String
        var value: JSONValue
        var unit: String?
        var labels: [String: String]?

        enum CodingKeys: String, CodingKey {
            case sensor, metric, topic, type, value, unit, labels
            case timeMs = "time_ms"
            case receivedMs = "received_ms"
        }

        init(_ r: Reading) {
            sensor = r.sensorID
            metric = r.metric
            topic = r.topic
            timeMs = r.timeMs
            receivedMs = r.receivedAtMs
            type = r.value.typeName
            value = switch r.value {
            case .double(let d): .number(d)
            case .integer(let i): .number(Double(i))
            case .boolean(let b): .bool(b)
            case .text(let t): .string(t)
            }
            unit = r.unit
            labels = r.labels.isEmpty ? nil : r.labels
        }
    }

    public enum JSONValue: Encodable {
        case number(Double), bool(Bool), string(String)
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .number(let d): try c.encode(d)
            case .bool(let b): try c.encode(b)
            case .string(let s): try c.encode(s)
            }
        }
    }

    /// One JSON document (pretty) or one line of JSON Lines.
    public static func json(_ value: some Encodable, line: Bool = false) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = line ? [.sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: tables

    public static func quarantineTable(_ entries: [QuarantineEntry], held: Int64) -> String {
        var lines = ["\(held) payload(s) in quarantine" + (entries.count < held ? ", \(entries.count) shown" : "")]
        guard !entries.isEmpty else { return lines[0] }
        lines += table(["ID", "RECEIVED", "TOPIC", "BYTES", "REASON"], entries.map { e in
            [String(e.id), time(e.receivedAtMs), Printable.clean(e.topic, maxLength: 60), String(e.payload.count), Printable.clean(e.reason, maxLength: 100)]
        })
        return lines.joined(separator: "\n")
    }

    public static func quarantineDetail(_ e: QuarantineEntry) -> String {
        var lines = [
            "id        \(e.id)",
            "topic     \(Printable.clean(e.topic))",
            "received  \(time(e.receivedAtMs)) (\(e.receivedAtMs) ms)",
            "reason    \(Printable.clean(e.reason))",
            "payload   \(e.payload.count) bytes",
        ]
        if let text = String(validating: e.payload, as: UTF8.self) {
            lines.append(Printable.lines(text))
        } else {
            lines += hexDump(e.payload)
        }
        return lines.joined(separator: "\n")
    }

    public static func setAsideTable(_ batches: [SetAsideBatch]) -> String {
        var lines = ["\(batches.count) batch(es) set aside, \(batches.reduce(0) { $0 + $1.readingCount }) readings"]
        guard !batches.isEmpty else { return lines[0] }
        lines += table(["SEQ", "EPOCH", "READINGS", "OLDEST", "ATTEMPTS", "REFUSED BECAUSE"], batches.map { b in
            [String(b.sequence), String(b.epoch.prefix(8)), String(b.readingCount), time(b.oldestReceivedMs), String(b.attempts),
             Printable.clean(b.lastError, maxLength: 100)]
        })
        return lines.joined(separator: "\n")
    }

    public static func setAsideDetail(_ b: SetAsideBatch) -> String {
        var lines = [
            "batch     \(b.sequence) (epoch \(b.epoch))",
            "readings  \(b.readingCount), oldest received \(time(b.oldestReceivedMs))",
            "attempts  \(b.attempts)",
            "refused   \(Printable.clean(b.lastError))",
            "bytes     \(b.payload.count)",
        ]
        do {
            let readings = try b.readings()
            let series = Dictionary(grouping: readings) { "\($0.sensorID)/\($0.metric)" }
            lines.append("series    \(series.count):")
            lines += table(["SENSOR/METRIC", "READINGS", "FIRST", "LAST"], series.keys.sorted().prefix(50).map { key in
                let times = series[key]!.map(\.timeMs)
                return [Printable.clean(key, maxLength: 80), String(times.count), time(times.min() ?? 0), time(times.max() ?? 0)]
            })
            if series.count > 50 { lines.append("... \(series.count - 50) more (export has them all)") }
        } catch {
            lines.append("contents  the stored batch does not decode: \(error)")
        }
        return lines.joined(separator: "\n")
    }

    public static func replaySummary(_ s: ReplaySummary, via: BufferOperator.Via) -> String {
        var lines = [
            "replayed by \(via == .agent ? "the running agent" : "this tool (no agent running)"): \(s.examined) quarantined payload(s) examined",
            "  \(s.replayed) decode now: \(s.readings) reading(s) buffered\(s.withheld > 0 ? ", \(s.withheld) withheld by the rules" : ""), out of quarantine",
            "  \(s.redeliveries) were copies of readings stored already: out of quarantine, nothing stored again",
            "  \(s.stillQuarantined) still fail and stay quarantined" + (s.reasons.isEmpty ? "" : ":"),
        ]
        for (kind, count) in s.reasons.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
            lines.append("    \(count)  \(Printable.clean(kind, maxLength: 100))")
        }
        if let stopped = s.stopped { lines.append("stopped early: \(stopped)") }
        return lines.joined(separator: "\n")
    }

    // MARK: helpers

    /// ISO 8601, UTC, milliseconds.
    public static func time(_ ms: Int64) -> String {
        Date(timeIntervalSince1970: Double(ms) / 1000).ISO8601Format(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func table(_ header: [String], _ rows: [[String]]) -> [String] {
        Printable.table(header: header, rows: rows)
    }

    static func hexDump(_ bytes: [UInt8]) -> [String] {
        stride(from: 0, to: bytes.count, by: 16).map { offset in
            let chunk = bytes[offset..<min(offset + 16, bytes.count)]
            let hex = chunk.map { String(format: "%02x", $0) }.joined(separator: " ")
            let ascii = String(chunk.map { (0x20..<0x7F).contains($0) ? Character(UnicodeScalar($0)) : "." })
            return String(format: "%08x  ", offset) + hex.padding(toLength: 48, withPad: " ", startingAt: 0) + "  " + ascii
        }
    }
}

/// Operators' durations (`--older-than 7d`) and times (`--since 2h` or an ISO 8601 time).
public enum OperatorTime {
    /// `90s`, `30m`, `12h`, `7d`, `2w`, or a number of seconds; nil when it is none of these.
    public static func durationMs(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let last = trimmed.last else { return nil }
        let (digits, unit) = units[last].map { (trimmed.dropLast(), $0) } ?? (Substring(trimmed), 1000)
        guard let count = Int64(digits), count >= 0 else { return nil }
        let (ms, overflow) = count.multipliedReportingOverflow(by: unit)
        return overflow ? nil : ms
    }

    /// A wall time in ms: an ISO 8601 time (`2026-12-06T10:00:00Z`), or a duration meaning that
    /// long before `nowMs`.
    public static func pointMs(_ text: String, nowMs: Int64) -> Int64? {
        if let ago = durationMs(text) { return nowMs - ago }
        for style in [Date.ISO8601FormatStyle(includingFractionalSeconds: true), Date.ISO8601FormatStyle()] {
            if let date = try? style.parse(text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
        }
        return nil
    }
}
