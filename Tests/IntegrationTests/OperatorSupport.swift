import Foundation
import Testing
import TributaryTesting

/// A Prometheus text exposition, checked line by line as it is read: every sample belongs to a
/// family declared with `# TYPE`, names and labels are well formed, values are numbers.
struct Scrape {
    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    private(set) var samples: [Sample] = []
    private(set) var types: [String: String] = [:]

    init(_ text: String) throws {
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            let fail = { (why: String) in TestingError("metrics line \(number + 1) \(why): \(line)") }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else { throw fail("is a bad TYPE") }
                guard types[String(parts[2])] == nil else { throw fail("declares a family twice") }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...].replacingOccurrences(of: "+Inf", with: "inf")) else {
                throw fail("has no value")
            }
            let head = line[..<space]
            let name: String
            var labels: [String: String] = [:]
            if let brace = head.firstIndex(of: "{") {
                guard head.hasSuffix("}") else { throw fail("has unclosed labels") }
                name = String(head[..<brace])
                var rest = head[head.index(after: brace)..<head.index(before: head.endIndex)]
                while !rest.isEmpty {
                    guard let eq = rest.firstIndex(of: "="), rest[rest.index(after: eq)] == "\"" else { throw fail("has a bad label") }
                    let key = String(rest[..<eq])
                    var i = rest.index(eq, offsetBy: 2), value = ""
                    while i < rest.endIndex, rest[i] != "\"" {
                        if rest[i] == "\\" { i = rest.index(after: i) }
                        value.append(rest[i])
                        i = rest.index(after: i)
                    }
                    guard i < rest.endIndex else { throw fail("has an unterminated label value") }
                    labels[key] = value
                    rest = rest[rest.index(after: i)...]
                    if rest.first == "," { rest = rest.dropFirst() }
                }
            } else {
                name = String(head)
            }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }), name.first?.isNumber == false else { throw fail("has a bad name") }
            let family = ["_bucket", "_sum", "_count"].first { name.hasSuffix($0) && types[String(name.dropLast($0.count))] == "histogram" }
                .map { String(name.dropLast($0.count)) } ?? name
            guard types[family] != nil else { throw fail("belongs to no declared family") }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}

/// A tmux server of its own (its own socket), for driving a full-screen program like a person.
struct Tmux {
    let socket: String
    let logDirectory: String

    /// Records a failure when tmux is missing: the watch tests need a real terminal.
    static func isInstalled() -> Bool {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux") else {
            Issue.record("tmux is not installed (apt-get install tmux); ./scripts/test.sh installs it")
            return false
        }
        return true
    }

    func start(session: String, width: Int, height: Int, command: String) async throws {
        try await run(["new-session", "-d", "-s", session, "-x", "\(width)", "-y", "\(height)", command])
    }

    func capture(_ session: String) async throws -> String {
        try await run(["capture-pane", "-p", "-t", session])
    }

    func sendKeys(_ session: String, _ keys: String...) async throws {
        try await run(["send-keys", "-t", session] + keys)
    }

    func killServer() {
        _ = try? ChildProcess(executable: "/usr/bin/tmux", arguments: ["-S", socket, "kill-server"])
    }

    @discardableResult
    private func run(_ arguments: [String]) async throws -> String {
        let (code, output) = try await ProcessHarness.run("/usr/bin/tmux", ["-S", socket] + arguments, in: logDirectory)
        guard code == 0 else { throw TestingError("tmux \(arguments.first ?? "") failed: \(output)") }
        return output
    }
}

extension String {
    /// Appends this text as a line to a file (test configs).
    func appendLine(toFile path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        handle.write(Data(("\n" + self).utf8))
    }
}

/// A loopback port that accepts connections (the kernel completes them) and never answers.
final class SilentListener: Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { throw TestingError("cannot listen: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard address.sin_port != 0 else { throw TestingError("no port bound") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { Glibc.close(fd) }
}
