import Foundation
import TributaryCore

/// What a simulator published, reading by reading, and the faults it injected, so `verify`
/// knows what must arrive once, what must be quarantined, and whom to expect nothing more from.
///
/// File format: JSON lines. The first line is a header with the counts; each further line is
///   - a reading: `{"g":gateway,"s":sensor,"m":metric,"t":time_ms,"v":value}` with `v` a JSON
///     number, boolean or string, and no `t` for a reading without a time of its own (the
///     agent stamps its receive time, so any time matches);
///   - a malformed message the agent must quarantine: `{"quarantine":topic}`;
///   - a sensor that fell silent: `{"silent":sensor,"g":gateway}`.
public struct Manifest: Sendable, Equatable {
    public struct Entry: Sendable, Hashable {
        public var gatewayID: String
        public var sensorID: String
        public var metric: String
        /// Nil when the message carried no time (a plain number): any time matches.
        public var timeMs: Int64?
        public var value: ReadingValue

        public init(gatewayID: String, sensorID: String, metric: String, timeMs: Int64?, value: ReadingValue) {
            self.gatewayID = gatewayID
            self.sensorID = sensorID
            self.metric = metric
            self.timeMs = timeMs
            self.value = value
        }

        /// A reading as the sink should hold it, at its own time.
        public init(_ reading: Reading) {
            self.init(gatewayID: reading.gatewayID, sensorID: reading.sensorID, metric: reading.metric, timeMs: reading.timeMs, value: reading.value)
        }

        /// The key `verify` compares on; numbers compare by value whatever their type.
        public var key: String { Manifest.key(gatewayID, sensorID, metric, timeMs.map(String.init) ?? "*", value) }
    }

    public struct Sensor: Sendable, Hashable {
        public var gatewayID: String
        public var sensorID: String
        public init(gatewayID: String, sensorID: String) {
            self.gatewayID = gatewayID
            self.sensorID = sensorID
        }
    }

    /// Every MQTT publish, duplicates and Sparkplug births included.
    public var messagesPublished: Int
    public var entries: [Entry]
    /// Malformed messages by topic: the agent must quarantine exactly these.
    public var quarantined: [String: Int] = [:]
    /// Messages published twice with the same bytes (their readings count once in `entries`).
    public var duplicatesPublished = 0
    /// Messages sent after one that was due later.
    public var outOfOrder = 0
    /// Sensors that fell silent during the run: nothing more may arrive from them.
    public var silentSensors: [Sensor] = []

    public init(messagesPublished: Int, entries: [Entry]) {
        self.messagesPublished = messagesPublished
        self.entries = entries
    }

    static func key(_ gateway: String, _ sensor: String, _ metric: String, _ time: String, _ value: ReadingValue) -> String {
        "\(gateway)\u{1F}\(sensor)\u{1F}\(metric)\u{1F}\(time)\u{1F}\(canonical(value))"
    }

    /// Adds another run's manifest (another gateway, or the same one later).
    public mutating func append(_ other: Manifest) {
        messagesPublished += other.messagesPublished
        entries += other.entries
        quarantined.merge(other.quarantined, uniquingKeysWith: +)
        duplicatesPublished += other.duplicatesPublished
        outOfOrder += other.outOfOrder
        silentSensors += other.silentSensors
    }

    static func canonical(_ value: ReadingValue) -> String {
        switch value {
        // + 0.0 makes -0.0 plain 0.0: SQLite stores -0.0 as 0.0, and they are the same number.
        case .double(let d): "n:\(d + 0.0)"
        case .integer(let i): "n:\(Double(i))"
        case .boolean(let b): "b:\(b ? 1 : 0)"
        case .text(let t): "s:\(t)"
        }
    }

    public func write(to path: String) throws {
        var text = Self.headerLine(messages: messagesPublished, readings: entries.count, quarantined: quarantined.values.reduce(0, +),
                                   duplicates: duplicatesPublished, outOfOrder: outOfOrder, silent: silentSensors.count) + "\n"
        for e in entries { text += Self.line(e) }
        for (topic, count) in quarantined.sorted(by: { $0.key < $1.key }) {
            text += String(repeating: "{\"quarantine\":\(JSONValue.quoted(topic))}\n", count: count)
        }
        for sensor in silentSensors {
            text += "{\"silent\":\(JSONValue.quoted(sensor.sensorID)),\"g\":\(JSONValue.quoted(sensor.gatewayID))}\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// The first line, without its newline.
    static func headerLine(messages: Int, readings: Int, quarantined: Int = 0, duplicates: Int = 0, outOfOrder: Int = 0, silent: Int = 0) -> String {
        "{\"kind\":\"tributary-manifest\",\"version\":2,\"messages\":\(messages),\"readings\":\(readings)"
            + ",\"quarantined\":\(quarantined),\"duplicates\":\(duplicates),\"out_of_order\":\(outOfOrder),\"silent\":\(silent)}"
    }

    /// One reading's line, with its newline.
    static func line(_ e: Entry) -> String {
        let time = e.timeMs.map { ",\"t\":\($0)" } ?? ""
        return "{\"g\":\(JSONValue.quoted(e.gatewayID)),\"s\":\(JSONValue.quoted(e.sensorID)),\"m\":\(JSONValue.quoted(e.metric))\(time),\"v\":\(e.value.jsonLiteral)}\n"
    }

    public static func read(from path: String) throws -> Manifest {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ManifestError(path: path, line: 0, reason: "cannot read: \(error.localizedDescription)")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).makeIterator()
        guard let header = lines.next(), case .object(let fields) = try parse(header, path: path, line: 1),
              fields.contains(where: { $0.0 == "kind" && $0.1 == .string("tributary-manifest") }) else {
            throw ManifestError(path: path, line: 1, reason: "not a tributary manifest (missing header)")
        }
        func headerCount(_ name: String) -> Int {
            if case .integer(let n)? = fields.first(where: { $0.0 == name })?.1 { return Int(n) }
            return 0
        }
        var manifest = Manifest(messagesPublished: headerCount("messages"), entries: [])
        manifest.duplicatesPublished = headerCount("duplicates")
        manifest.outOfOrder = headerCount("out_of_order")
        var number = 1
        while let line = lines.next() {
            number += 1
            guard case .object(let members) = try parse(line, path: path, line: number) else {
                throw ManifestError(path: path, line: number, reason: "expected an object")
            }
            let m = Dictionary(members, uniquingKeysWith: { a, _ in a })
            if case .string(let topic)? = m["quarantine"] {
                manifest.quarantined[topic, default: 0] += 1
                continue
            }
            if case .string(let sensor)? = m["silent"], case .string(let g)? = m["g"] {
                manifest.silentSensors.append(Sensor(gatewayID: g, sensorID: sensor))
                continue
            }
            guard case .string(let g)? = m["g"], case .string(let s)? = m["s"], case .string(let metric)? = m["m"], let v = m["v"] else {
                throw ManifestError(path: path, line: number, reason: "a reading needs g, s, m and v (and t when it has a time)")
            }
            var time: Int64?
            switch m["t"] {
            case .integer(let t)?: time = t
            case nil, .null?: time = nil
            default: throw ManifestError(path: path, line: number, reason: "t must be an integer (ms since the epoch)")
            }
            let value: ReadingValue
            switch v {
            case .double(let d): value = .double(d)
            case .integer(let i): value = .integer(i)
            case .bool(let b): value = .boolean(b)
            case .string(let text): value = .text(text)
            default: throw ManifestError(path: path, line: number, reason: "v must be a number, boolean or string")
            }
            manifest.entries.append(Entry(gatewayID: g, sensorID: s, metric: metric, timeMs: time, value: value))
        }
        return manifest
    }

    private static func parse(_ line: Substring, path: String, line number: Int) throws -> JSONValue {
        do {
            return try JSONValue.parse(Array(line.utf8))
        } catch {
            throw ManifestError(path: path, line: number, reason: error.description)
        }
    }
}


public struct ManifestError: Error, CustomStringConvertible {
    public let path: String
    public let line: Int
    public let reason: String
    public var description: String { "manifest \(path), line \(line): \(reason)" }
}
