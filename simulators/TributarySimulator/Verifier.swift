import TributaryClickHouse
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

    /// One stored reading, as the comparison needs it.
    struct Row {
        var gatewayID, sensorID, metric: String
        var timeMs: Int64
        var value: ReadingValue
    }

    /// Compares the sink's rows for the manifest's gateways and sensors with the manifest.
    /// `sink` is `sqlite:PATH` or a ClickHouse URL; ClickHouse is read with `FINAL`, so the
    /// copies a retried insert left behind (not yet merged away) count once, as any query
    /// that wants exact results must read them.
    /// `caFile` is the CA for a `clickhouse+https` sink's certificate.
    public static func verify(_ manifest: Manifest, sink: String, caFile: String? = nil) async throws -> Report {
        let gateways = Set(manifest.entries.map(\.gatewayID)).sorted()
        let rows: [Row]
        if ClickHouseEndpoint.isClickHouseURL(sink) {
            rows = try await clickHouseRows(sink: sink, gateways: gateways, caFile: caFile)
        } else if sink.hasPrefix("sqlite:") {
            rows = try sqliteRows(path: String(sink.dropFirst("sqlite:".count)))
        } else {
            throw VerifyError(description: "sink '\(sink)': verify supports sqlite:PATH and clickhouse://...")
        }
        return compare(manifest, rows)
    }

    private static func value(type: String?, double: Double?, text: String?, int: Int64?) -> ReadingValue {
        switch type {
        case "boolean": .boolean(int != 0)
        case "text": .text(text ?? "")
        default: .double(double ?? .nan)
        }
    }

    private static func sqliteRows(path: String) throws -> [Row] {
        let db: SQLiteDatabase
        do {
            db = try SQLiteDatabase(path: path, readOnly: true)
        } catch {
            throw VerifyError(description: "cannot open sink \(path): \(error)")
        }
        defer { db.close() }
        var rows: [Row] = []
        try db.withConnection { c throws(SQLiteError) in
            try c.forEach("SELECT gateway_id, sensor_id, metric, time_ms, value_type, value, value_int, value_text FROM readings") { row in
                rows.append(Row(gatewayID: row.string(0) ?? "", sensorID: row.string(1) ?? "", metric: row.string(2) ?? "",
                                timeMs: row.int64(3),
                                value: value(type: row.string(4), double: row.double(5), text: row.string(7), int: row.int64(6))))
            }
        }
        return rows
    }

    private static func clickHouseRows(sink: String, gateways: [String], caFile: String?) async throws -> [Row] {
        let endpoint: ClickHouseEndpoint
        do {
            endpoint = try ClickHouseEndpoint(url: sink)
        } catch {
            throw VerifyError(description: "sink \(error)")
        }
        let client = ClickHouseClient(endpoint: endpoint, timeout: .seconds(120), caFile: caFile)
        defer { Task { await client.shutdown() } }
        let result: [[String?]]
        do {
            result = try await client.select("""
                SELECT gateway_id, sensor_id, metric, time_ms, value_type, value, value_int, value_text
                FROM \(endpoint.database).readings FINAL
                WHERE gateway_id IN (\(gateways.map(ClickHouseClient.quote).joined(separator: ", ")))
                """, maxResponseBytes: 4 << 30)
        } catch {
            throw VerifyError(description: "cannot read sink \(endpoint): \(error)")
        }
        return result.compactMap { f in
            guard f.count == 8, let timeMs = f[3].flatMap({ Int64($0) }) else { return nil }
            return Row(gatewayID: f[0] ?? "", sensorID: f[1] ?? "", metric: f[2] ?? "", timeMs: timeMs,
                       value: value(type: f[4], double: f[5].flatMap { Double($0) }, text: f[7], int: f[6].flatMap { Int64($0) }))
        }
    }

    static func compare(_ manifest: Manifest, _ rows: [Row]) -> Report {
        var expected: [String: Int] = [:]
        for entry in manifest.entries { expected[entry.key, default: 0] += 1 }
        let sensors = Set(manifest.entries.map { "\($0.gatewayID)\u{1F}\($0.sensorID)" })

        var found: [String: Int] = [:]
        var count = 0
        for row in rows where sensors.contains("\(row.gatewayID)\u{1F}\(row.sensorID)") {
            let entry = Manifest.Entry(gatewayID: row.gatewayID, sensorID: row.sensorID, metric: row.metric, timeMs: row.timeMs, value: row.value)
            found[entry.key, default: 0] += 1
            count += 1
        }

        var report = Report(expected: manifest.entries.count, found: count)
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
