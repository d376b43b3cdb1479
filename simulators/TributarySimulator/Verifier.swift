import TributaryClickHouse
import TributaryCore
import TributaryBuffer
import TributarySinks

/// Checks a sink against a manifest: every reading exactly once.
public enum Verifier {
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        public var expected = 0
        public var found = 0
        /// In the manifest, not in the sink.
        public var missing = 0
        /// In the sink more often than in the manifest (extra copies).
        public var duplicates = 0
        /// Of `duplicates`, copies of readings published without an event time: the one kind a
        /// QoS 1 redelivery can store twice (README, Durability).
        public var untimedDuplicates = 0
        /// In the sink for the manifest's sensors, but never published.
        public var unexpected = 0
        /// Malformed messages the manifest says the agent must quarantine, and how many of
        /// them its buffer holds (nil when no agent buffer was given to check).
        public var quarantineExpected = 0
        public var quarantineFound: Int?
        /// Topics whose quarantined count is not the manifest's.
        public var quarantineMismatches = 0
        public var examples: [String] = []

        public init(expected: Int = 0, found: Int = 0) {
            self.expected = expected
            self.found = found
        }

        public var passed: Bool {
            missing == 0 && duplicates == 0 && unexpected == 0 && quarantineMismatches == 0
        }

        public var description: String {
            let quarantine = quarantineFound.map { ", quarantined \($0) of \(quarantineExpected) malformed" } ?? ""
            let untimed = untimedDuplicates > 0 ? " (\(untimedDuplicates) without an event time)" : ""
            var text = "expected \(expected), found \(found), missing \(missing), duplicates \(duplicates)\(untimed), unexpected \(unexpected)\(quarantine): "
                + (passed ? "OK" : "FAILED")
            for example in examples { text += "\n  " + example }
            return text
        }
    }

    public struct VerifyError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Counts the sink's rows against the manifest as they are read, so a large sink is never
    /// held in memory whole (only one count per distinct reading).
    struct Tally {
        private var expected: [String: Int] = [:]
        private let sensors: Set<String>
        private let expectedCount: Int
        private var found: [String: Int] = [:]
        private var count = 0

        init(_ manifest: Manifest) {
            for entry in manifest.entries { expected[entry.key, default: 0] += 1 }
            // A silent sensor's readings after it fell silent would be unexpected.
            sensors = Set(manifest.entries.map { "\($0.gatewayID)\u{1F}\($0.sensorID)" }
                + manifest.silentSensors.map { "\($0.gatewayID)\u{1F}\($0.sensorID)" })
            expectedCount = manifest.entries.count
        }

        /// One stored reading; rows of sensors outside the manifest are ignored.
        mutating func add(_ row: StoredReading) {
            let (gatewayID, sensorID, metric, timeMs) = (row.gatewayID, row.sensorID, row.metric, row.timeMs)
            guard sensors.contains("\(gatewayID)\u{1F}\(sensorID)") else { return }
            let value: ReadingValue = switch row.valueType {
            case "boolean": .boolean(row.valueInt != 0)
            case "text": .text(row.valueText ?? "")
            default: .double(row.value ?? .nan)
            }
            // A reading published without a time matches at whatever time the agent stamped.
            var key = Manifest.key(gatewayID, sensorID, metric, String(timeMs), value)
            if expected[key] == nil {
                let untimed = Manifest.key(gatewayID, sensorID, metric, "*", value)
                if expected[untimed] != nil { key = untimed }
            }
            found[key, default: 0] += 1
            count += 1
        }

        var report: Report {
            var report = Report(expected: expectedCount, found: count)
            for (key, count) in expected {
                let have = found[key] ?? 0
                if have < count {
                    report.missing += count - have
                    if report.examples.count < 5 { report.examples.append("missing: " + key.replacingOccurrences(of: "\u{1F}", with: " ")) }
                } else if have > count {
                    report.duplicates += have - count
                    if key.contains("\u{1F}*\u{1F}") { report.untimedDuplicates += have - count }
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


    /// Compares the sink's rows for the manifest's gateways and sensors with the manifest.
    /// `sink` is `sqlite:PATH` or a ClickHouse URL; ClickHouse is read with `FINAL`, so the
    /// copies a retried insert left behind (not yet merged away) count once, as any query
    /// that wants exact results must read them.
    /// `caFile` is the CA for a `clickhouse+https` sink's certificate.
    /// `agentBuffers`: the agents' buffer files, whose quarantine must hold exactly the
    /// manifest's malformed messages (per topic).
    public static func verify(_ manifest: Manifest, sink: String, caFile: String? = nil, agentBuffers: [String] = []) async throws -> Report {
        var report = try await verifySink(manifest, sink: sink, caFile: caFile)
        report.quarantineExpected = manifest.quarantined.values.reduce(0, +)
        if !agentBuffers.isEmpty {
            let (held, examples) = try countQuarantined(manifest.quarantined, in: agentBuffers)
            report.quarantineFound = held
            report.quarantineMismatches = examples.count
            report.examples += examples.prefix(5)
        }
        return report
    }

    /// Per topic of the manifest, the quarantined payloads the buffers hold: the total, and an
    /// example for each topic whose count differs (more is as wrong as fewer).
    private static func countQuarantined(_ expected: [String: Int], in paths: [String]) throws -> (Int, [String]) {
        var held: [String: Int] = [:]
        for path in paths {
            do {
                for (topic, count) in try BufferReader(path: path).quarantinedCountsByTopic() { held[topic, default: 0] += count }
            } catch {
                throw VerifyError(description: "cannot read agent buffer \(path): \(error)")
            }
        }
        var total = 0
        var examples: [String] = []
        for (topic, count) in expected.sorted(by: { $0.key < $1.key }) {
            let have = held[topic] ?? 0
            total += have
            if have != count { examples.append("quarantine: \(topic): \(have) held, \(count) malformed sent") }
        }
        return (total, examples)
    }

    private static func verifySink(_ manifest: Manifest, sink: String, caFile: String?) async throws -> Report {
        var tally = Tally(manifest)
        if ClickHouseEndpoint.isClickHouseURL(sink) {
            let gateways = Set(manifest.entries.map(\.gatewayID)).sorted()
            try await readClickHouse(sink: sink, gateways: gateways, caFile: caFile, into: &tally)
        } else if sink.hasPrefix("sqlite:") {
            try readSQLite(path: String(sink.dropFirst("sqlite:".count)), into: &tally)
        } else {
            throw VerifyError(description: "sink '\(sink)': verify supports sqlite:PATH and clickhouse://...")
        }
        return tally.report
    }

    private static func readSQLite(path: String, into tally: inout Tally) throws {
        do {
            try SQLiteSink.Reader(path: path).forEachReading { tally.add($0) }
        } catch {
            throw VerifyError(description: "cannot read sink \(path): \(error)")
        }
    }

    private static func readClickHouse(sink: String, gateways: [String], caFile: String?, into tally: inout Tally) async throws {
        let endpoint: ClickHouseEndpoint
        do {
            endpoint = try ClickHouseEndpoint(url: sink)
        } catch {
            throw VerifyError(description: "sink \(error)")
        }
        let reader = ClickHouseSink.Reader(endpoint: endpoint, caFile: caFile)
        defer { Task { await reader.shutdown() } }
        do {
            for row in try await reader.readings(ofGateways: gateways) { tally.add(row) }
        } catch {
            throw VerifyError(description: "cannot read sink \(endpoint): \(error)")
        }
    }
}
