import TributarySQLite

/// Why the buffer file cannot be used. None of these overwrite or delete the file.
public enum BufferError: Error, Sendable, CustomStringConvertible {
    case notABuffer(path: String, detail: String)
    case foreignGateway(path: String, owner: String, expected: String)
    case newerFormat(path: String, version: Int)
    case corrupt(path: String, detail: String)
    case sqlite(SQLiteError)

    public var description: String {
        switch self {
        case .notABuffer(let path, let detail):
            "\(path) is not a Tributary buffer (\(detail)); move it away or choose another data_dir"
        case .foreignGateway(let path, let owner, let expected):
            "\(path) belongs to gateway '\(owner)', not '\(expected)'; use that gateway id or another data_dir"
        case .newerFormat(let path, let version):
            "\(path) has buffer format \(version), newer than this agent understands; upgrade the agent"
        case .corrupt(let path, let detail):
            "\(path) failed its integrity check (\(detail)); it was left as it is for inspection"
        case .sqlite(let error): error.description
        }
    }
}
