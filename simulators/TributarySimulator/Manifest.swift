import Foundation
import TributaryCore

/// What a simulator published, reading by reading, so `verify` can check a sink against it.
///
/// File format: JSON lines. The first line is a header; each further line is one reading:
/// `{"g":gateway,"s":sensor,"m":metric,"t":time_ms,"v":value}` with `v` a JSON number,
/// boolean or string.
public struct Manifest: Sendable, Equatable {
    public struct Entry: Sendable, Hashable {
        public var gatewayID: String
        public var sensorID: String
        public var metric: String
        public var timeMs: Int64
        public var value: ReadingValue

        public init(gatewayID: String, sensorID: String, metric: String, timeMs: Int64, value: ReadingValue) {
            self.gatewayID = gatewayID
            self.sensorID = sensorID
            self.metric = metric
            self.timeMs = timeMs
            self.value = value
        }

        /// The key `verify` compares on; numbers compare by value whatever their type.
        public var key: String { "\(gatewayID)\u{1F}\(sensorID)\u{1F}\(metric)\u{1F}\(timeMs)\u{1F}\(Manifest.canonical(value))" }
    }

    public var messagesPublished: Int
    public var entries: [Entry]

    public init(messagesPublished: Int, entries: [Entry]) {
        self.messagesPublished = messagesPublished
        self.entries = entries
    }

    static func canonical(_ value: ReadingValue) -> String {
        switch value {
        case .double(let d): "n:\(d)"
        case .integer(let i): "n:\(Double(i))"
        case .boolean(let b): "b:\(b ? 1 : 0)"
        case .text(let t): "s:\(t)"
        }
    }

    public func write(to path: String) throws {
        var text = "{\"kind\":\"tributary-manifest\",\"version\":1,\"messages\":\(messagesPublished),\"readings\":\(entries.count)}\n"
        for e in entries {
            text += "{\"g\":\(JSONValue.quoted(e.gatewayID)),\"s\":\(JSONValue.quoted(e.sensorID)),\"m\":\(JSONValue.quoted(e.metric)),\"t\":\(e.timeMs),\"v\":\(jsonValue(e.value))}\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
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
        var messages = 0
        if case .integer(let n)? = fields.first(where: { $0.0 == "messages" })?.1 { messages = Int(n) }
        var entries: [Entry] = []
        var number = 1
        while let line = lines.next() {
            number += 1
            guard case .object(let members) = try parse(line, path: path, line: number) else {
                throw ManifestError(path: path, line: number, reason: "expected an object")
            }
            let m = Dictionary(members, uniquingKeysWith: { a, _ in a })
            guard case .string(let g)? = m["g"], case .string(let s)? = m["s"], case .string(let metric)? = m["m"],
                  case .integer(let t)? = m["t"], let v = m["v"] else {
                throw ManifestError(path: path, line: number, reason: "a reading needs g, s, m, t and v")
            }
            let value: ReadingValue
            switch v {
            case .double(let d): value = .double(d)
            case .integer(let i): value = .integer(i)
            case .bool(let b): value = .boolean(b)
            case .string(let text): value = .text(text)
            default: throw ManifestError(path: path, line: number, reason: "v must be a number, boolean or string")
            }
            entries.append(Entry(gatewayID: g, sensorID: s, metric: metric, timeMs: t, value: value))
        }
        return Manifest(messagesPublished: messages, entries: entries)
    }

    private static func parse(_ line: Substring, path: String, line number: Int) throws -> JSONValue {
        do {
            return try JSONValue.parse(Array(line.utf8))
        } catch {
            throw ManifestError(path: path, line: number, reason: error.description)
        }
    }

    private func jsonValue(_ value: ReadingValue) -> String {
        switch value {
        case .double(let d): "\(d)"
        case .integer(let i): "\(i)"
        case .boolean(let b): b ? "true" : "false"
        case .text(let t): JSONValue.quoted(t)
        }
    }
}


public struct ManifestError: Error, CustomStringConvertible {
    public let path: String
    public let line: Int
    public let reason: String
    public var description: String { "manifest \(path), line \(line): \(reason)" }
}
