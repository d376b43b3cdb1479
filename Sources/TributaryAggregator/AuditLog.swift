import Foundation
import Logging
import Synchronization
import TributaryCore
import TributaryRuntime

/// The aggregator's audit trail: who sent or asked what, and what became of it, one JSON
/// object a line, appended to `audit-YYYY-MM-DD.jsonl` (UTC days) in its directory. A day's
/// file is never rewritten; files older than the retention are deleted when a new day starts
/// (and at start). Lines are written before the answer goes out, without fsync: a power cut
/// can lose the last moments, a crash of the aggregator cannot. Known gap: a clock set far
/// ahead deletes files by the wrong "today".
///
/// A refusal is written once and then counted: the same refusal again (same peer address,
/// actor, claimed gateway, status and reason) within `repeatWindowMs` only adds to a count,
/// written as one `repeats` line when the window closes. A client sending 3,000 wrong tokens a
/// second writes two lines a minute, not 89 GB a day. The directory is capped at `maxBytes`:
/// past it nothing more is written, each event is counted as unwritten, and an error is logged
/// (and `tributary_audit_unwritten_total` rises) so an operator can act before the law's
/// retention is at risk.
public final class AuditLog: Sendable {
    public struct Event: Sendable {
        /// `batch` (a request to /v1/batches) or `operator` (the admin API and /metrics).
        public var kind: String
        /// `gateway:ID` (authenticated by its token), `claimed:ID` (no gateway tokens are
        /// configured: the id is what the request says), `operator`, or `unauthenticated`.
        public var actor: String
        public var action: String
        public var httpStatus: Int
        public var outcome: String
        public var batch: String?
        public var readings: Int?
        public var reason: String?
        /// The client's address (without its port).
        public var peer: String?
        /// The gateway a request says it speaks for, when that is not proven (`actor` says
        /// who proved what).
        public var claimed: String?

        public init(kind: String, actor: String, action: String, httpStatus: Int, outcome: String,
                    batch: String? = nil, readings: Int? = nil, reason: String? = nil, peer: String? = nil, claimed: String? = nil) {
            self.kind = kind
            self.actor = actor
            self.action = action
            self.httpStatus = httpStatus
            self.outcome = outcome
            self.batch = batch
            self.readings = readings
            self.reason = reason
            self.peer = peer
            self.claimed = claimed
        }

        /// What makes two refusals the same: who (the peer, and the actor it proved), what kind
        /// of request, and the answer. Not the path, the reason or the gateway claimed, which a
        /// client chooses: each new one would be a new line (20,000 distinct paths wrote 20,000).
        /// The first line keeps them; the count says how many more came.
        var repeatKey: String {
            [kind, actor, String(httpStatus), outcome, peer ?? ""].joined(separator: "\u{1F}")
        }
    }

    /// Repeats of one refusal within a window.
    private struct Repeats {
        var event: Event
        var windowEndMs: Int64
        var count = 0
        var firstMs: Int64 = 0
        var lastMs: Int64 = 0
    }

    public let directory: String
    /// `audit.retention_days`, which a reload changes.
    public var retentionDays: Int { retention.withLock { $0 } }
    private let retention: Mutex<Int>
    public let maxBytes: Int64
    public let repeatWindowMs: Int64
    /// Distinct refusals counted at once; past it, a new one is written each time.
    static let maxRepeatKeys = 10_000
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var day = ""
        var fd: Int32 = -1
        var failing = false
        /// The last write stopped mid-line.
        var partialLine = false
        var repeats: [String: Repeats] = [:]
        var nextWindowEndMs = Int64.max
        /// Bytes in the directory's day files.
        var bytes: Int64 = 0
        var full = false
        var unwritten: UInt64 = 0
    }

    public init(directory: String, retentionDays: Int, maxBytes: Int64 = 20 << 30, repeatWindowMs: Int64 = 60_000,
                logger: Logger) throws(AggregatorStartError) {
        self.directory = directory
        retention = Mutex(retentionDays)
        self.maxBytes = maxBytes
        self.repeatWindowMs = repeatWindowMs
        self.logger = logger
        do {
            try makeDirectory()
        } catch {
            throw AggregatorStartError(message: "audit.dir: cannot create \(directory): \(error.localizedDescription)")
        }
        guard access(directory, W_OK) == 0 else { throw AggregatorStartError(message: "audit.dir: \(directory) is not writable") }
        var info = stat()
        if stat(directory, &info) == 0, info.st_mode & 0o007 != 0 {
            logger.warning("audit.dir is open to other users: they can list the day files, and plant one if they can write there; chmod 700 it",
                           metadata: ["dir": "\(directory)", "mode": "\(String(info.st_mode & 0o777, radix: 8))"])
        }
        let size = dayFileBytes()
        state.withLock { $0.bytes = size }
    }

    /// Events not written because the directory reached `maxBytes`, since start.
    public var unwrittenEvents: UInt64 { state.withLock { $0.unwritten } }

    deinit {
        state.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    /// Appends one line, or counts a repeated refusal. A failing disk is logged (once until it
    /// works again), never thrown: the request's fate is already decided.
    public func record(_ event: Event, atMs: Int64 = WallClock.nowMs()) {
        let due = state.withLock { s -> [Repeats] in
            // Scanned only when a window is due: a flood of many distinct refusals stays cheap.
            guard atMs >= s.nextWindowEndMs else { return [] }
            let due = s.repeats.values.filter { $0.windowEndMs <= atMs }
            for closed in due { s.repeats[closed.event.repeatKey] = nil }
            s.nextWindowEndMs = s.repeats.values.map(\.windowEndMs).min() ?? .max
            return due
        }
        for closed in due where closed.count > 0 { append(Self.line(closed.event, atMs: atMs, repeats: closed)) }
        if event.httpStatus >= 400 {
            let key = event.repeatKey
            let counted = state.withLock { s -> Bool in
                /// Counts a repeat under `key` when it is already being watched.
                func countedAsRepeat(_ key: String) -> Bool {
                    guard var seen = s.repeats[key] else { return false }
                    if seen.count == 0 { seen.firstMs = atMs }
                    seen.count += 1
                    seen.lastMs = atMs
                    s.repeats[key] = seen
                    return true
                }
                if countedAsRepeat(key) { return true }
                if s.repeats.count < Self.maxRepeatKeys {
                    s.repeats[key] = Repeats(event: event, windowEndMs: atMs + repeatWindowMs)
                    s.nextWindowEndMs = min(s.nextWindowEndMs, atMs + repeatWindowMs)
                    return false
                }
                // Too many addresses at once: the rest are counted together, by kind and answer.
                var overflow = event
                overflow.peer = "(\(Self.maxRepeatKeys)+ addresses)"
                overflow.actor = "various"
                let overflowKey = overflow.repeatKey
                if countedAsRepeat(overflowKey) { return true }
                s.repeats[overflowKey] = Repeats(event: overflow, windowEndMs: atMs + repeatWindowMs)
                s.nextWindowEndMs = min(s.nextWindowEndMs, atMs + repeatWindowMs)
                return false
            }
            if counted { return }
        }
        append(Self.line(event, atMs: atMs, repeats: nil))
    }

    /// Writes the repeats still counted (at shutdown).
    public func flush(atMs: Int64 = WallClock.nowMs()) {
        let pending = state.withLock { s -> [Repeats] in
            defer { s.repeats = [:] }
            return Array(s.repeats.values)
        }
        for closed in pending where closed.count > 0 { append(Self.line(closed.event, atMs: atMs, repeats: closed)) }
    }

    private static func line(_ event: Event, atMs: Int64, repeats: Repeats?) -> (day: String, bytes: [UInt8]) {
        let at = Timestamp.iso8601(ms: atMs)
        var fields = [
            "\"at\":\(JSONValue.quoted(at))", "\"kind\":\(JSONValue.quoted(event.kind))",
            "\"actor\":\(JSONValue.quoted(event.actor))", "\"action\":\(JSONValue.quoted(event.action))",
            "\"http\":\(event.httpStatus)", "\"outcome\":\(JSONValue.quoted(event.outcome))",
        ]
        // Capped: the batch id and the reason can carry what a client sent.
        if let batch = event.batch { fields.append("\"batch\":\(JSONValue.quoted(Printable.clean(batch, maxLength: 300)))") }
        if let readings = event.readings { fields.append("\"readings\":\(readings)") }
        if let reason = event.reason, !reason.isEmpty { fields.append("\"reason\":\(JSONValue.quoted(Printable.clean(reason, maxLength: 500)))") }
        if let peer = event.peer { fields.append("\"peer\":\(JSONValue.quoted(Printable.clean(peer, maxLength: 64)))") }
        if let claimed = event.claimed, !claimed.isEmpty { fields.append("\"claimed\":\(JSONValue.quoted(Printable.clean(claimed, maxLength: 128)))") }
        if let repeats {
            // The same refusal again, this many more times, after the line written for the first.
            fields.append("\"repeats\":\(repeats.count)")
            fields.append("\"first_repeat\":\(JSONValue.quoted(Timestamp.iso8601(ms: repeats.firstMs)))")
            fields.append("\"last_repeat\":\(JSONValue.quoted(Timestamp.iso8601(ms: repeats.lastMs)))")
        }
        return (String(at.prefix(10)), Array(("{" + fields.joined(separator: ",") + "}\n").utf8))
    }

    private func append(_ entry: (day: String, bytes: [UInt8])) {
        let (day, line) = entry
        state.withLock { s in
            let newDay = s.day != day
            if newDay {
                s.day = day
                s.bytes = max(0, s.bytes - deleteExpired(today: day))
            }
            guard s.bytes + Int64(line.count) <= maxBytes else {
                s.unwritten += 1
                if !s.full {
                    s.full = true
                    logger.error("the audit log reached audit.max_bytes: events are counted, not written, until old day files expire or the cap is raised",
                                 metadata: ["dir": "\(directory)", "max_bytes": "\(maxBytes)"])
                }
                return
            }
            if s.full {
                s.full = false
                logger.notice("the audit log is below audit.max_bytes again", metadata: ["dir": "\(directory)", "unwritten": "\(s.unwritten)"])
            }
            if s.fd < 0 || newDay {
                if s.fd >= 0 { close(s.fd) }
                s.fd = openDayFile(day)
                if s.fd < 0 && errno == ENOENT {
                    // The directory was removed under us: make it again rather than lose every line.
                    try? makeDirectory()
                    s.fd = openDayFile(day)
                }
                // After a short write, end the broken line so this one starts on its own.
                if s.fd >= 0 && s.partialLine { s.partialLine = !(writeOnce(s.fd, [UInt8(ascii: "\n")]) == 1) }
            }
            let written = s.fd >= 0 ? writeOnce(s.fd, line) : -1
            let failure = errno
            if written > 0 { s.bytes += Int64(written) }
            if written != line.count {
                s.unwritten += 1
                if written > 0 { s.partialLine = true }
                if !s.failing {
                    logger.error("cannot write the audit log", metadata: ["file": "\(path(day: day))", "error": "\(String(cString: strerror(failure)))"])
                }
                s.failing = true
                if s.fd >= 0 { close(s.fd) }
                s.fd = -1  // opened again with the next line
            } else if s.failing {
                s.failing = false
                logger.notice("audit log writable again", metadata: ["file": "\(path(day: day))"])
            }
        }
    }

    func path(day: String) -> String { "\(directory)/\(Self.fileName(day: day))" }

    static func fileName(day: String) -> String { "audit-\(day).jsonl" }

    /// Never through a symbolic link: one planted in the directory would have the audit lines
    /// written over another file.
    private func openDayFile(_ day: String) -> Int32 {
        let fd = open(path(day: day), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return fd }
        // A file someone else made there first (audit.dir in a shared directory) is not ours to
        // write: they could read or change what we add. One of ours open to others is closed up.
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == geteuid() else {
            close(fd)
            logger.error("an audit file belongs to another user; not writing to it", metadata: [
                "file": "\(path(day: day))", "owner_uid": "\(info.st_uid)"])
            errno = EPERM
            return -1
        }
        if info.st_mode & 0o077 != 0 { fchmod(fd, 0o600) }
        return fd
    }

    private func dayFileBytes() -> Int64 {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("audit-") && $0.hasSuffix(".jsonl") }.reduce(Int64(0)) { total, name in
            var info = stat()
            return lstat(directory + "/" + name, &info) == 0 ? total + Int64(info.st_size) : total
        }
    }

    private func makeDirectory() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// A reload's `audit.retention_days`: day files past it are deleted now (and at each new day).
    func setRetentionDays(_ days: Int) {
        retention.withLock { $0 = days }
        state.withLock { s in
            guard !s.day.isEmpty else { return }
            s.bytes = max(0, s.bytes - deleteExpired(today: s.day))
        }
    }

    /// Deletes the day files whose day is more than `retentionDays` before today (their names
    /// sort by date), so at least that many full days stay.
    /// Returns the bytes freed.
    private func deleteExpired(today: String) -> Int64 {
        var freed: Int64 = 0
        let oldestKeptMs = (Timestamp.epochMsOfDay(today) ?? 0) - Int64(retentionDays) * 86_400_000
        let oldestKept = Self.fileName(day: String(Timestamp.iso8601(ms: oldestKeptMs).prefix(10)))
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasPrefix("audit-") && name.hasSuffix(".jsonl") && name.count == oldestKept.count && name < oldestKept {
            var info = stat()
            let size = lstat(directory + "/" + name, &info) == 0 ? Int64(info.st_size) : 0
            if unlink(directory + "/" + name) == 0 {
                freed += size
                logger.info("audit file past its retention deleted", metadata: ["file": "\(name)", "retention_days": "\(retentionDays)"])
            }
        }
        return freed
    }
}

/// write(2) of a whole buffer, once; the count written or -1.
private func writeOnce(_ fd: Int32, _ bytes: [UInt8]) -> Int {
    bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}
