import TributaryCore
import TributarySQLite

/// Checks a sink against a manifest: every reading exactly once.
public enum Verifier {
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        public var expected = 0
        public var found = 0
        /// In the manifest, not in the sink.
        public var missing = 0
        /// In the sink more often than in the manifest (extra copies).
        public var duplicates = 0
        /// In the sink for the manifest's sensors, but never published.
        public var unexpected = 0
        public var examples: [String] = []

        public init(expected: Int = 0, found: Int = 0) {
            self.expected = expected
            self.found = found
        }

        public var passed: Bool { missing == 0 && duplicates == 0 && unexpected == 0 }

        public var description: String {
            var text = "expected \(expected), found \(found), missing \(missing), duplicates \(duplicates), unexpected \(unexpected): "
                + (passed ? "OK" : "FAILED")
            for example in examples { text += "\n  " + example }
            return text
        }
    }

    public struct VerifyError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Compares the sink's rows for the manifest's gateways and sensors with the manifest.
    public static func verify(_ manifest: Manifest, sink: String) throws -> Report {
        guard sink.hasPrefix("sqlite:") else {
            throw VerifyError(description: "sink '\(sink)': verify supports sqlite:PATH")
        }
        let path = String(sink.dropFirst("sqlite:".count))
        let db: SQLiteDatabase
        do {
            db = try SQLiteDatabase(path: path, readOnly: true)
        } catch {
            throw VerifyError(description: "cannot open sink \(path): \(error)")
        }
        defer { db.close() }

        var expected: [String: Int] = [:]
        for entry in manifest.entries { expected[entry.key, default: 0] += 1 }
        let sensors = Set(manifest.entries.map { "\($0.gatewayID)\u{1F}\($0.sensorID)" })

        var found: [String: Int] = [:]
        var rows = 0
        try db.withConnection { c throws(SQLiteError) in
            try c.forEach("SELECT gateway_id, sensor_id, metric, time_ms, value_type, value, value_int, value_text FROM readings") { row in
                let gateway = row.string(0) ?? "", sensor = row.string(1) ?? ""
                guard sensors.contains("\(gateway)\u{1F}\(sensor)") else { return }
                let value: ReadingValue = switch row.string(4) {
                case "boolean": .boolean(row.int64(6) != 0)
                case "text": .text(row.string(7) ?? "")
                default: .double(row.double(5))
                }
                let entry = Manifest.Entry(gatewayID: gateway, sensorID: sensor, metric: row.string(2) ?? "",
                                           timeMs: row.int64(3), value: value)
                found[entry.key, default: 0] += 1
                rows += 1
            }
        }

        var report = Report(expected: manifest.entries.count, found: rows)
        for (key, count) in expected {
            let have = found[key] ?? 0
            if have < count {
                report.missing += count - have
                if report.examples.count < 5 { report.examples.append("missing: " + key.replacingOccurrences(of: "\u{1F}", with: " ")) }
            } else if have > count {
                report.duplicates += have - count
                if report.examples.count < 5 { report.examples.append("duplicate: " + key.replacingOccurrences(of: "\u{1F}", with: " ")) }
            }
        }
        for (key, have) in found where expected[key] == nil {
            report.unexpected += have
            if report.examples.count < 5 { report.examples.append("unexpected: " + key.replacingOccurrences(of: "\u{1F}", with: " ")) }
        }
        return report
    }
}
