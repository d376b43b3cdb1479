import Logging

/// How the executables write their logs: `text` for people, `json` (one object per line) for
/// journald and log shippers.
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json

    /// Installs the format for the whole process; call once, before the first log line.
    public func bootstrap() {
        switch self {
        case .text: LoggingSystem.bootstrap { TextLogHandler(label: $0) }
        case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        }
    }
}
