import Logging
import Synchronization

/// The log level and format of a running process, changed on a reload (SIGHUP) without a
/// restart. `bootstrap` installs handlers that ask it at each line, so every `Logger` made
/// before or after a change follows it.
public final class LiveLogging: Sendable {
    private struct State {
        var level: Logger.Level
        var format: LogFormat
    }

    private let state: Mutex<State>

    private init(level: Logger.Level, format: LogFormat) {
        state = Mutex(State(level: level, format: format))
    }

    public var level: Logger.Level {
        get { state.withLock { $0.level } }
        set { state.withLock { $0.level = newValue } }
    }

    public var format: LogFormat {
        get { state.withLock { $0.format } }
        set { state.withLock { $0.format = newValue } }
    }

    /// Installs the handlers for the whole process; call once, before the first log line.
    public static func bootstrap(level: Logger.Level, format: LogFormat) -> LiveLogging {
        let live = LiveLogging(level: level, format: format)
        LoggingSystem.bootstrap { LiveLogHandler(label: $0, live: live) }
        return live
    }
}

/// Writes each line as the live format says (`TextLogHandler` or `JSONLogHandler`), at the live
/// level. A logger's `logLevel` set after the bootstrap sets the process's level.
struct LiveLogHandler: LogHandler {
    private var text: TextLogHandler
    private var json: JSONLogHandler
    private let live: LiveLogging

    init(label: String, live: LiveLogging) {
        text = TextLogHandler(label: label)
        json = JSONLogHandler(label: label)
        self.live = live
    }

    var logLevel: Logger.Level {
        get { live.level }
        set { live.level = newValue }
    }

    var metadata: Logger.Metadata {
        get { text.metadata }
        set {
            text.metadata = newValue
            json.metadata = newValue
        }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { text.metadataProvider }
        set {
            text.metadataProvider = newValue
            json.metadataProvider = newValue
        }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { text[metadataKey: key] }
        set {
            text[metadataKey: key] = newValue
            json[metadataKey: key] = newValue
        }
    }

    func log(event: LogEvent) {
        switch live.format {
        case .text: text.log(event: event)
        case .json: json.log(event: event)
        }
    }
}
