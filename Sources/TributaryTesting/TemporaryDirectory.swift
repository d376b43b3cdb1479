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

    /// Writes a secret (a token, password or key file) as an operator must: mode 0600, since
    /// every Tributary program refuses a secret file other users can read. Returns its path.
    @discardableResult
    public func writeSecret(_ name: String, _ text: String) throws -> String {
        try Self.writeSecret(text, to: file(name))
    }

    /// As `writeSecret(_:_:)`, at any path (replaced whole, as an operator's editor does).
    @discardableResult
    public static func writeSecret(_ text: String, to path: String) throws -> String {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        guard chmod(path, 0o600) == 0 else { throw TestingError("chmod 600 \(path) failed: errno \(errno)") }
        return path
    }

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
