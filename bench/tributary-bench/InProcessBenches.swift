import CSQLite  // the baseline is the bare C API, nothing of ours between it and SQLite
import Foundation
import TributaryBuffer
import TributarySync
import TributaryCore
import TributaryMQTT
import TributarySimulator
import TributaryWire

/// Readings as the sensor simulator's smart plugs produce them (4 numbers and a switch per
/// message), received 1-20 ms after they were taken.
func simulatedReadings(messages: Int, sensors: Int = 10, gatewayID: String = "gw-bench") throws -> (readings: [Reading], payloads: [[UInt8]]) {
    var options = SensorSimulator.Options(broker: try MQTTBroker(url: "mqtt://127.0.0.1:1"), gatewayID: gatewayID, sensors: sensors, rate: 1000)
    options.kinds = [.plug]
    var traffic = TrafficGenerator(options: options, startMs: 1_795_000_000_000)
    var generator = SystemRandomNumberGenerator()
    var readings: [Reading] = []
    var payloads: [[UInt8]] = []
    for _ in 0..<messages {
        guard let message = traffic.next() else { break }
        payloads.append(message.payload)
        let receivedAt = (message.entries.first?.timeMs ?? 0) + Int64.random(in: 1...20, using: &generator)
        for entry in message.entries {
            readings.append(Reading(gatewayID: entry.gatewayID, sensorID: entry.sensorID, metric: entry.metric, topic: message.topic,
                                    timeMs: entry.timeMs ?? receivedAt, receivedAtMs: receivedAt, value: entry.value))
        }
    }
    return (readings, payloads)
}

/// 2. The agent's buffer write path (BufferStore.append, groups as the committer makes them)
/// against a bare prepared-statement insert loop into the same table with the same pragmas.
func bufferBench(dir: String, readings count: Int) throws -> BenchResult {
    let readings = try simulatedReadings(messages: count / 5).readings
    let group = 2500  // commit_max_messages 500 x 5 readings
    var agentRates: [Double] = []
    var rawRates: [Double] = []
    for run in 0..<3 {
        let agentPath = "\(dir)/buffer-\(run).sqlite"
        let store = try BufferStore(path: agentPath, gatewayID: "gw-bench")
        let agentSeconds = try timed {
            for start in stride(from: 0, to: readings.count, by: group) {
                try store.append(Array(readings[start..<min(start + group, readings.count)]), quarantined: [])
            }
        }
        agentRates.append(Double(readings.count) / agentSeconds)
        rawRates.append(Double(readings.count) / (try rawInsert(path: "\(dir)/raw-\(run).sqlite", readings, group: group)))
    }
    let agent = median(agentRates), raw = median(rawRates)
    var result = BenchResult(name: "buffer", what: "readings/s committed to the agent's buffer (groups of \(group))", value: agent,
                             unit: "readings/s", baseline: "bare sqlite3 prepared insert loop", baselineValue: raw, goal: ">= 0.7x")
    result.met = (result.ratio ?? 0) >= 0.7
    result.notes = ["readings": String(readings.count), "runs": "median of 3", "pragmas": "journal_mode=WAL, synchronous=NORMAL"]
    return result
}

/// The baseline: sqlite3_prepare once, bind and step per row, one transaction per group.
private func rawInsert(path: String, _ readings: [Reading], group: Int) throws -> Double {
    let db = try BareSQLite(path: path)
    try db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 256")
    try db.exec("""
        CREATE TABLE readings (id INTEGER PRIMARY KEY, gateway_id TEXT NOT NULL, sensor_id TEXT NOT NULL, metric TEXT NOT NULL,
            topic TEXT NOT NULL, time_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, value_type INTEGER NOT NULL,
            value_real REAL, value_int INTEGER, value_text TEXT, unit TEXT, labels TEXT)
        """)
    let stmt = try db.prepare("INSERT INTO readings (gateway_id, sensor_id, metric, topic, time_ms, received_ms, value_type, value_real, value_int, value_text, unit, labels) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,NULL)")
    defer { sqlite3_finalize(stmt) }
    let transient = BareSQLite.transient
    return try timed {
        for start in stride(from: 0, to: readings.count, by: group) {
            try db.exec("BEGIN IMMEDIATE")
            for r in readings[start..<min(start + group, readings.count)] {
                sqlite3_bind_text(stmt, 1, r.gatewayID, -1, transient)
                sqlite3_bind_text(stmt, 2, r.sensorID, -1, transient)
                sqlite3_bind_text(stmt, 3, r.metric, -1, transient)
                sqlite3_bind_text(stmt, 4, r.topic, -1, transient)
                sqlite3_bind_int64(stmt, 5, r.timeMs)
                sqlite3_bind_int64(stmt, 6, r.receivedAtMs)
                switch r.value {
                case .double(let d): sqlite3_bind_int(stmt, 7, 1); sqlite3_bind_double(stmt, 8, d); sqlite3_bind_null(stmt, 9); sqlite3_bind_null(stmt, 10)
                case .integer(let i): sqlite3_bind_int(stmt, 7, 2); sqlite3_bind_null(stmt, 8); sqlite3_bind_int64(stmt, 9, i); sqlite3_bind_null(stmt, 10)
                case .boolean(let b): sqlite3_bind_int(stmt, 7, 3); sqlite3_bind_null(stmt, 8); sqlite3_bind_int64(stmt, 9, b ? 1 : 0); sqlite3_bind_null(stmt, 10)
                case .text(let t): sqlite3_bind_int(stmt, 7, 4); sqlite3_bind_null(stmt, 8); sqlite3_bind_null(stmt, 9); sqlite3_bind_text(stmt, 10, t, -1, transient)
                }
                try db.step(stmt)
            }
            try db.exec("COMMIT")
        }
    }
}

/// 5. Bytes on the wire per reading: sealed batches of 5,000 readings (the agent's default),
/// protobuf and zstd as the agent sends them, against the same readings as the sensors' JSON,
/// gzip-compressed (a JSON lines file of the messages).
func wireBench() throws -> BenchResult {
    let (readings, payloads) = try simulatedReadings(messages: 10_000)
    let perBatch = 5000
    var batchBytes = 0
    for start in stride(from: 0, to: readings.count, by: perBatch) {
        let slice = Array(readings[start..<min(start + perBatch, readings.count)])
        var request = Tributary_V1_SyncRequest()
        request.batch = BatchCodec.encode(identity: BatchIdentity(gatewayID: "gw-bench", epoch: "e", sequence: UInt64(start / perBatch + 1)),
                                          readings: slice, sealedAtMs: slice.last?.receivedAtMs ?? 0)
        batchBytes += Compression.compress(try request.serializedBytes(), encoding: .zstd).count
    }
    // The same readings as JSON: each batch's messages as lines, gzip-compressed together.
    var jsonBytes = 0
    let messagesPerBatch = perBatch / 5
    for start in stride(from: 0, to: payloads.count, by: messagesPerBatch) {
        let lines: [UInt8] = payloads[start..<min(start + messagesPerBatch, payloads.count)].flatMap { $0 + [UInt8(ascii: "\n")] }
        jsonBytes += Compression.compress(lines, encoding: .gzip).count
    }
    let perReading = Double(batchBytes) / Double(readings.count)
    let jsonPerReading = Double(jsonBytes) / Double(readings.count)
    var result = BenchResult(name: "wire", what: "compressed batch bytes per reading (4 of 5 readings numeric)", value: perReading,
                             unit: "B/reading", baseline: "sensors' JSON, gzip", baselineValue: jsonPerReading, lowerIsBetter: true,
                             goal: "<= 6 B/reading")
    result.met = perReading <= 6
    result.notes = ["readings": String(readings.count), "batch_readings": String(perBatch), "compression": "zstd (agent default)"]
    return result
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
