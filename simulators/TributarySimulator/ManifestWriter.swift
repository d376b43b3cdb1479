import Foundation
import Synchronization
import TributaryCore

/// A manifest written as readings are acknowledged, so a fleet of ten thousand gateways keeps
/// none of them in memory: one writer per run, shared by every gateway. The format is
/// `Manifest`'s; the header, whose counts are known only at the end, is written first as
/// spaces (JSON allows trailing whitespace) and overwritten in place by `finish`.
final class ManifestWriter: Sendable {
    /// Room for the header line: its counts take at most 6 x 20 digits beyond ~130 characters.
    static let headerWidth = 300
    /// Buffered bytes written at once: about a second of a 10k-gateway fleet at 1 reading/s.
    static let flushBytes = 1 << 20

    private struct State {
        var fd: Int32
        var buffer: [UInt8] = []
        var readings = 0
        var failure: String?
    }

    let path: String
    private let state: Mutex<State>

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ManifestError(path: path, line: 0, reason: "cannot create: \(String(cString: strerror(errno)))") }
        state = Mutex(State(fd: fd))
        var placeholder = [UInt8](repeating: UInt8(ascii: " "), count: Self.headerWidth)
        placeholder.append(UInt8(ascii: "\n"))
        try state.withLock { s in
            try Self.writeAll(placeholder, to: s.fd, path: path)
        }
    }

    /// Adds acknowledged readings. The lines are built outside the lock; the write (a page-cache
    /// copy of a megabyte, about once a second at 10k gateways) happens under it, on the
    /// caller's task, which is cheaper than handing buffers to a thread and keeps them bounded.
    func append(_ readings: [Reading]) {
        var lines = ""
        for reading in readings { lines += Manifest.line(Manifest.Entry(reading)) }
        state.withLock { s in
            s.buffer.append(contentsOf: lines.utf8)
            s.readings += readings.count
            if s.buffer.count >= Self.flushBytes { flush(&s) }
        }
    }

    /// Writes what is buffered and the real header, and closes the file. Returns the readings written.
    @discardableResult
    func finish(messages: Int) throws -> Int {
        try state.withLock { s in
            flush(&s)
            defer {
                close(s.fd)
                s.fd = -1
            }
            if let failure = s.failure { throw ManifestError(path: path, line: 0, reason: failure) }
            let header = Array(Manifest.headerLine(messages: messages, readings: s.readings).utf8)
            guard header.count <= Self.headerWidth else { throw ManifestError(path: path, line: 1, reason: "header longer than its room") }
            let written = header.withUnsafeBytes { pwrite(s.fd, $0.baseAddress, $0.count, 0) }
            guard written == header.count else { throw ManifestError(path: path, line: 1, reason: "cannot write the header: \(String(cString: strerror(errno)))") }
            return s.readings
        }
    }

    private func flush(_ s: inout State) {
        guard !s.buffer.isEmpty, s.fd >= 0 else { return }
        do {
            try Self.writeAll(s.buffer, to: s.fd, path: path)
        } catch {
            // Kept for finish, which fails the run: a manifest missing lines would fail verify for the wrong reason.
            if s.failure == nil { s.failure = error.reason }
        }
        s.buffer.removeAll(keepingCapacity: true)
    }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws(ManifestError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ManifestError(path: path, line: 0, reason: "cannot write: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
}

/// The peak resident memory of this process (VmHWM), in kB; 0 where /proc is missing.
func peakResidentKB() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
    return line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
}
