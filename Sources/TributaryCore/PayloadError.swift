/// Why a payload could not be decoded. The agent quarantines such payloads with this reason.
public enum PayloadError: Error, Sendable, Equatable, CustomStringConvertible {
    case topicMismatch(topic: String, template: String)
    case empty
    case notUTF8
    case invalidJSON(String)
    case notANumber(String)
    case invalidTimestamp(String)
    case noReadings

    public var description: String {
        switch self {
        case .topicMismatch(let topic, let template):
            "topic '\(topic)' does not fit template '\(template)'"
        case .empty: "empty payload"
        case .notUTF8: "payload is not UTF-8 text"
        case .invalidJSON(let why): "invalid JSON: \(why)"
        case .notANumber(let text): "not a number: '\(text.prefix(64))'"
        case .invalidTimestamp(let why): "invalid timestamp: \(why)"
        case .noReadings: "payload holds no values"
        }
    }
}
