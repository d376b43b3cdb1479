import Foundation

/// A fresh directory under the system temp dir; `remove()` deletes it, unless
/// `TRIBUTARY_KEEP_TEST_DIRS=1` is set (to read a failed run's logs and databases afterwards).
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "tributary-test") throws {
        let template = NSTemporaryDirectory() + "\(prefix).XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else {
            throw TestingError("mkdtemp failed for \(template): errno \(errno)")
        }
        path = String(cString: made)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() {
        if ProcessInfo.processInfo.environment["TRIBUTARY_KEEP_TEST_DIRS"] == "1" {
            FileHandle.standardError.write(Data("kept \(path)\n".utf8))
            return
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}

public struct TestingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
