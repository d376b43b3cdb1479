import Foundation
import Logging
import Synchronization
import TributaryCore

/// The aggregator's audit trail: who sent or asked what, and what became of it, one JSON
/// object a line, appended to `audit-YYYY-MM-DD.jsonl` (UTC days) in its directory. A day's
/// file is never rewritten; files older than the retention are deleted when a new day starts
/// (and at start). Lines are written before the answer goes out, without fsync: a power cut
/// can lose the last moments, a crash of the aggregator cannot. Known gap: a clock set far
/// ahead deletes files by the wrong "today".
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

        public init(kind: String, actor: String, action: String, httpStatus: Int, outcome: String,
                    batch: String? = nil, readings: Int? = nil, reason: String? = nil) {
            self.kind = kind
            self.actor = actor
            self.action = action
            self.httpStatus = httpStatus
            self.outcome = outcome
            self.batch = batch
            self.readings = readings
            self.reason = reason
        }
    }

    public let directory: String
    public let retentionDays: Int
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var day = ""
        var fd: Int32 = -1
        var failing = false
        /// The last write stopped mid-line.
        var partialLine = false
    }

    public init(directory: String, retentionDays: Int, logger: Logger) throws(AggregatorStartError) {
        self.directory = directory
        self.retentionDays = retentionDays
        self.logger = logger
        do {
            try makeDirectory()
        } catch {
            throw AggregatorStartError(message: "audit.dir: cannot create \(directory): \(error.localizedDescription)")
        }
        guard access(directory, W_OK) == 0 else { throw AggregatorStartError(message: "audit.dir: \(directory) is not writable") }
    }

    deinit {
        state.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    /// Appends one line. A failing disk is logged (once until it works again), never thrown:
    /// the request's fate is already decided.
    public func record(_ event: Event, atMs: Int64 = WallClock.nowMs()) {
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
        let line = Array(("{" + fields.joined(separator: ",") + "}\n").utf8)
        let day = String(at.prefix(10))
        state.withLock { s in
            let newDay = s.day != day
            if newDay {
                s.day = day
                deleteExpired(today: day)
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
            if written != line.count {
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

    private func openDayFile(_ day: String) -> Int32 {
        open(path(day: day), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
    }

    private func makeDirectory() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Deletes the day files whose day is more than `retentionDays` before today (their names
    /// sort by date), so at least that many full days stay.
    private func deleteExpired(today: String) {
        let oldestKeptMs = (Timestamp.epochMsOfDay(today) ?? 0) - Int64(retentionDays) * 86_400_000
        let oldestKept = Self.fileName(day: String(Timestamp.iso8601(ms: oldestKeptMs).prefix(10)))
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasPrefix("audit-") && name.hasSuffix(".jsonl") && name.count == oldestKept.count && name < oldestKept {
            if unlink(directory + "/" + name) == 0 {
                logger.info("audit file past its retention deleted", metadata: ["file": "\(name)", "retention_days": "\(retentionDays)"])
            }
        }
    }
}

/// write(2) of a whole buffer, once; the count written or -1.
private func writeOnce(_ fd: Int32, _ bytes: [UInt8]) -> Int {
    bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}
