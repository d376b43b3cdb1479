/// A configuration problem, naming the key and the file (or the flag) it came from, and the
/// line of the file where the key is, when known.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file, or nil when the value came from a flag or a default.
    public let file: String?
    /// The dotted key, e.g. `mqtt.subscriptions[1].template`.
    public let key: String
    public let message: String
    /// The line of `file` (from 1) where the key, or the section holding it, is written.
    public let line: Int?

    public init(file: String?, key: String, message: String, line: Int? = nil) {
        self.file = file
        self.key = key
        self.message = message
        self.line = line
    }

    public var description: String {
        // A problem of the whole file (unreadable, not YAML) belongs to no key.
        if let file, key.isEmpty { return "\(file): \(message)" + (line.map { " (line \($0))" } ?? "") }
        if let file { return "\(file): key '\(key)': \(message)" + (line.map { " (line \($0))" } ?? "") }
        return "setting '\(key)': \(message)"
    }
}

/// Every problem found in one configuration, in the order met: what `--check-config` prints.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public let problems: [ConfigError]

    public init(_ problems: [ConfigError]) { self.problems = problems }

    public var description: String { problems.map(\.description).joined(separator: "\n") }
}
