/// A configuration problem, naming the key and the file (or the flag) it came from.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file, or nil when the value came from a flag or a default.
    public let file: String?
    /// The dotted key, e.g. `mqtt.subscriptions[1].template`.
    public let key: String
    public let message: String

    public init(file: String?, key: String, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        if let file { return "\(file): key '\(key)': \(message)" }
        return "setting '\(key)': \(message)"
    }
}
