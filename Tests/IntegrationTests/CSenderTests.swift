import Foundation
import Testing
import TributaryCore
import TributarySimulator
import TributarySQLite
import TributaryTesting

/// The wire contract from C: `simulators/c-sender`, built with its Makefile against
/// libprotobuf-c, posts batches over plain HTTP/1.1 to a real aggregator, and the SQLite sink
/// must hold exactly what it sent. Needs make, a C compiler and libprotobuf-c-dev.
@Suite("C sender (libprotobuf-c) -> aggregator -> SQLite sink", .serialized)
struct CSenderTests {
    @Test("a batch from C is written once, its resend is a duplicate, its identity reused is refused")
    func batchesFromC() async throws {
        try await withHarness() { harness in
            let sender = try await Self.buildSender(into: harness.directory.file("c-sender"), logDirectory: harness.directory.path)
            let url = harness.aggregatorURL
            let first = SentBatch(sequence: 1, readings: 500, startMs: 1_700_000_000_000)

            var answer = try await Self.send(sender, first.arguments(url: url), in: harness.directory.path)
            #expect(answer.code == 0 && answer.output == "accepted 500 readings (batch \(first.identity))", "\(answer)")

            // The same arguments make the same batch (sealed_at_ms too, which the aggregator's
            // digest covers): the ledger knows it, nothing is written again.
            answer = try await Self.send(sender, first.arguments(url: url), in: harness.directory.path)
            #expect(answer.code == 0 && answer.output == "duplicate 500 readings (batch \(first.identity))", "\(answer)")

            // Other contents under the same identity are refused, not written beside the first.
            var conflicting = first
            conflicting.sensor = "c-sensor-other"
            answer = try await Self.send(sender, conflicting.arguments(url: url), in: harness.directory.path)
            #expect(answer.code == 1, "\(answer)")
            #expect(answer.output.contains("HTTP 409") && answer.output.contains("already written with different contents"),
                    "the reason reaches the operator: \(answer)")

            // Both value kinds in one batch: a double and an integer series of the same sensor.
            let second = SentBatch(sequence: 2, readings: 50, startMs: first.startMs + 1_000_000, integerMetric: "pulses")
            answer = try await Self.send(sender, second.arguments(url: url), in: harness.directory.path)
            #expect(answer.code == 0 && answer.output == "accepted 100 readings (batch \(second.identity))", "\(answer)")

            // Conservation: every reading sent is in the sink exactly once, with its time and value.
            let manifest = Manifest(messagesPublished: 2, entries: first.entries + second.entries)
            let report = try await Verifier.verify(manifest, sink: harness.sinkURL)
            #expect(report.passed && report.found == 600, "\(report)")

            // Column by column, including what verify does not compare (type, topic, unit, receive
            // time, the carrying batch), and nothing of the refused batch's sensor.
            let rows = try Self.sinkRows(path: harness.directory.file("aggregator/sink.sqlite"), gateway: SentBatch.gateway)
            let expected = (first.rows + second.rows).sorted { ($0.sequence, $0.metric, $0.timeMs) < ($1.sequence, $1.metric, $1.timeMs) }
            #expect(rows.count == expected.count, "the sink holds \(rows.count) rows of \(SentBatch.gateway), not \(expected.count)")
            if let mismatch = zip(rows, expected).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
                Issue.record("row \(mismatch.offset) differs:\n  stored \(mismatch.element.0)\n  sent   \(mismatch.element.1)")
            }
            let ledger = try Self.ledger(path: harness.directory.file("aggregator/sink.sqlite"), gateway: SentBatch.gateway)
            #expect(ledger == [[.text(SentBatch.epoch), .integer(1), .integer(500)], [.text(SentBatch.epoch), .integer(2), .integer(100)]],
                    "one ledger entry per batch: \(ledger)")

            // A usage error ends the sender before it sends anything.
            answer = try await Self.send(sender, ["--url", url, "--gateway", SentBatch.gateway, "--epoch", SentBatch.epoch,
                                                  "--sequence", "3", "--readings", "0"], in: harness.directory.path)
            #expect(answer.code == 2 && answer.output.contains("--readings must be at least 1"), "\(answer)")
        }
    }

    // MARK: helpers

    /// `simulators/c-sender` of this checkout.
    static let senderDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("simulators/c-sender").path

    /// Builds tributary-send out of tree with the sender's own Makefile (so the test builds it
    /// as a firmware engineer would); returns the binary's path.
    static func buildSender(into buildDirectory: String, logDirectory: String) async throws -> String {
        let (code, output) = try await ProcessHarness.run(
            "/usr/bin/env", ["make", "-C", senderDirectory, "BUILD_DIR=" + buildDirectory], in: logDirectory)
        guard code == 0 else {
            throw TestingError("building the C sender failed (it needs make, a C compiler and libprotobuf-c-dev):\n\(output)")
        }
        return buildDirectory + "/tributary-send"
    }

    /// Runs the sender to its end (it bounds its own connect and read by --timeout-s, 30 s by
    /// default); returns its exit code and its one line of output.
    static func send(_ sender: String, _ arguments: [String], in directory: String) async throws -> SenderAnswer {
        let (code, output) = try await ProcessHarness.run(sender, arguments, in: directory)
        return SenderAnswer(code: code, output: output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    struct SenderAnswer: CustomStringConvertible {
        let code: Int32
        let output: String
        var description: String { "exit \(code): \(output)" }
    }

    /// The gateway's rows in the sink's readings table, in batch, metric and time order.
    static func sinkRows(path: String, gateway: String) throws -> [SinkRow] {
        let db = try SQLiteDatabase(path: path, readOnly: true)
        defer { db.close() }
        var rows: [SinkRow] = []
        try db.withConnection { c throws(SQLiteError) in
            try c.forEach("""
                SELECT batch_seq, batch_epoch, sensor_id, metric, time_ms, received_ms, value, value_int, value_type, unit, topic
                FROM readings WHERE gateway_id = ? ORDER BY batch_seq, metric, time_ms
                """, [gateway]) { row in
                rows.append(SinkRow(
                    sequence: row.int64(0), epoch: row.string(1) ?? "", sensor: row.string(2) ?? "", metric: row.string(3) ?? "",
                    timeMs: row.int64(4), receivedMs: row.int64(5),
                    value: row.isNull(6) ? nil : row.double(6), valueInt: row.isNull(7) ? nil : row.int64(7),
                    valueType: row.string(8) ?? "", unit: row.string(9), topic: row.string(10) ?? ""))
            }
        }
        return rows
    }

    /// The gateway's dedup ledger entries: epoch, sequence, reading count.
    static func ledger(path: String, gateway: String) throws -> [[SQLiteValue]] {
        let db = try SQLiteDatabase(path: path, readOnly: true)
        defer { db.close() }
        return try db.withConnection { (c) throws(SQLiteError) -> [[SQLiteValue]] in
            try c.query("SELECT epoch, sequence, reading_count FROM batch_ledger WHERE gateway_id = ? ORDER BY epoch, sequence", gateway)
        }
    }
}

extension CSenderTests {
    /// One row of the sink's readings table, as far as the C sender decides it.
    struct SinkRow: Equatable, CustomStringConvertible {
        var sequence: Int64
        var epoch: String
        var sensor: String
        var metric: String
        var timeMs: Int64
        var receivedMs: Int64
        var value: Double?
        var valueInt: Int64?
        var valueType: String
        var unit: String?
        var topic: String

        var description: String {
            "batch \(epoch)/\(sequence) \(sensor) \(metric) t=\(timeMs) received=\(receivedMs) \(valueType) "
                + "value=\(value.map(String.init(describing:)) ?? "NULL") value_int=\(valueInt.map(String.init(describing:)) ?? "NULL") "
                + "unit=\(unit ?? "NULL") topic=\(topic)"
        }
    }

    /// One batch as tributary-send makes it from its arguments (see its --help): reading i of the
    /// double series is i * 0.5, of the integer series i * 7 - 1000, both at startMs + i * intervalMs.
    struct SentBatch {
        static let gateway = "gw-c"
        static let epoch = "c-epoch-1"
        static let metric = "temperature"

        var sequence: UInt64
        var readings: Int
        var startMs: Int64
        var intervalMs: Int64 = 1000
        var sensor = "c-sensor"
        var integerMetric: String? = nil

        func arguments(url: String) -> [String] {
            ["--url", url, "--gateway", Self.gateway, "--epoch", Self.epoch, "--sequence", String(sequence),
             "--readings", String(readings), "--sensor", sensor, "--metric", Self.metric,
             "--start-ms", String(startMs), "--interval-ms", String(intervalMs)]
                + (integerMetric.map { ["--integer-metric", $0] } ?? [])
        }

        /// As the sender and the aggregator print a batch identity.
        var identity: String { "\(Self.gateway)/\(Self.epoch)/\(sequence)" }

        func timeMs(_ i: Int) -> Int64 { startMs + Int64(i) * intervalMs }
        func doubleValue(_ i: Int) -> Double { Double(i) * 0.5 }
        func integerValue(_ i: Int) -> Int64 { Int64(i) * 7 - 1000 }

        var entries: [Manifest.Entry] {
            var entries = (0..<readings).map { i in
                Manifest.Entry(gatewayID: Self.gateway, sensorID: sensor, metric: Self.metric, timeMs: timeMs(i), value: .double(doubleValue(i)))
            }
            if let integerMetric {
                entries += (0..<readings).map { i in
                    Manifest.Entry(gatewayID: Self.gateway, sensorID: sensor, metric: integerMetric, timeMs: timeMs(i), value: .integer(integerValue(i)))
                }
            }
            return entries
        }

        /// Every reading is stamped as received at its event time (the sender sends no offsets),
        /// has no unit, and arrives on the sender's default topic.
        var rows: [SinkRow] {
            let topic = "sensors/\(Self.gateway)/\(sensor)"
            var rows = (0..<readings).map { i in
                SinkRow(sequence: Int64(sequence), epoch: Self.epoch, sensor: sensor, metric: Self.metric, timeMs: timeMs(i), receivedMs: timeMs(i),
                        value: doubleValue(i), valueInt: nil, valueType: "number", unit: nil, topic: topic)
            }
            if let integerMetric {
                rows += (0..<readings).map { i in
                    SinkRow(sequence: Int64(sequence), epoch: Self.epoch, sensor: sensor, metric: integerMetric, timeMs: timeMs(i), receivedMs: timeMs(i),
                            value: Double(integerValue(i)), valueInt: integerValue(i), valueType: "integer", unit: nil, topic: topic)
                }
            }
            return rows
        }
    }
}
