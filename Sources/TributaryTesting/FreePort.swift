import Foundation
import Synchronization

/// Network helpers for tests: loopback only.
public enum FreePort {
    /// Ports already handed out in this process. Tests run in parallel, and the kernel may hand
    /// a released port to the next bind(0): two harnesses given one port would each start a
    /// server on it, one would fail, and the other test's server would answer both.
    private static let handedOut = Mutex(Set<Int>())

    /// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released), never one this
    /// process was given before, and below the kernel's ephemeral range: a port from `bind(0)`
    /// lies in that range, where every outgoing connection also takes its local port, so under
    /// the suite's parallel load a client could take a server's port before the server bound it
    /// (the server then fails to start, and its test waits for nothing).
    public static func allocate() throws -> Int {
        let range = candidateRange()
        for _ in 0..<1000 {
            let port = Int.random(in: range)
            guard handedOut.withLock({ !$0.contains(port) }), isFree(port) else { continue }
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw TestingError("no new free port in \(range) after 1,000 tries")
    }

    /// 12,000 ports below the ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by
    /// default), above the well-known and registered services most machines run.
    static func candidateRange() -> ClosedRange<Int> {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let low = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32768
        let top = max(low - 1, 14_000)
        return (top - 11_999)...top
    }

    /// Whether a listener could bind 127.0.0.1:port now (no `SO_REUSEADDR`, so a port some
    /// connection still holds in TIME_WAIT counts as taken).
    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
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
