import Foundation
import Synchronization

/// Network helpers for tests: loopback only.
public enum FreePort {
    /// Ports already handed out in this process. Tests run in parallel, and the kernel may hand
    /// a released port to the next bind(0): two harnesses given one port would each start a
    /// server on it, one would fail, and the other test's server would answer both.
    private static let handedOut = Mutex(Set<Int>())

    /// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released),
    /// never one this process was given before.
    public static func allocate() throws -> Int {
        for _ in 0..<100 {
            let port = try bindAndRelease()
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw TestingError("no new free port after 100 tries")
    }

    private static func bindAndRelease() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestingError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard bound == 0 else { throw TestingError("bind/getsockname failed: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether something accepts TCP connections on 127.0.0.1:port.
    public static func isListening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Waits until the port accepts connections; throws after `timeout`.
    public static func waitUntilListening(_ port: Int, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !isListening(port) {
            guard ContinuousClock.now < deadline else { throw TestingError("nothing listens on 127.0.0.1:\(port) after \(timeout)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
