import Foundation
import Logging
import Testing
@testable import TributaryAggregator
import TributaryCore
import TributaryTesting

@Suite("audit log")
struct AuditLogTests {
    static let day0 = Timestamp.epochMsOfDay("2026-01-01")!

    static func lines(_ path: String) throws -> [[String: JSONValue]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            guard case .object(let fields) = try JSONValue.parse(Array(line.utf8)) else { throw TestingError("not an object: \(line)") }
            return Dictionary(fields, uniquingKeysWith: { first, _ in first })
        }
    }

    @Test func oneJSONLineAnEventInTheDaysFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 180, logger: Logger(label: "test"))
        audit.record(.init(kind: "batch", actor: "gateway:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "accepted",
                           batch: "gw-1/e/1", readings: 500), atMs: Self.day0 + 1000)
        audit.record(.init(kind: "operator", actor: "unauthenticated", action: "GET /v1/fleet", httpStatus: 401, outcome: "refused",
                           reason: "the \"operator\" token is wrong"), atMs: Self.day0 + 2000)
        let lines = try Self.lines(dir.file("audit/audit-2026-01-01.jsonl"))
        #expect(lines.count == 2)
        #expect(lines[0]["at"] == .string("2026-01-01T00:00:01.000Z") && lines[0]["actor"] == .string("gateway:gw-1"))
        #expect(lines[0]["http"] == .integer(200) && lines[0]["readings"] == .integer(500) && lines[0]["reason"] == nil)
        #expect(lines[1]["reason"] == .string("the \"operator\" token is wrong") && lines[1]["batch"] == nil)
        var info = stat()
        #expect(stat(dir.file("audit/audit-2026-01-01.jsonl"), &info) == 0 && info.st_mode & 0o777 == 0o600)
    }

    @Test func aNewDayStartsAFileAndDeletesThoseBeyondTheRetention() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 3, logger: Logger(label: "test"))
        let event = AuditLog.Event(kind: "batch", actor: "claimed:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "heartbeat")
        for day in 0..<5 { audit.record(event, atMs: Self.day0 + Int64(day) * 86_400_000 + 5) }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.file("audit")).sorted()
        // Today and the 3 full days before it.
        #expect(files == ["audit-2026-01-02.jsonl", "audit-2026-01-03.jsonl", "audit-2026-01-04.jsonl", "audit-2026-01-05.jsonl"])
        #expect(try Self.lines(dir.file("audit/audit-2026-01-05.jsonl")).count == 1, "each day's line went to its own day's file")
        try "not ours\n".write(toFile: dir.file("audit/notes.txt"), atomically: true, encoding: .utf8)
        audit.record(event, atMs: Self.day0 + 10 * 86_400_000)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("audit")).sorted() == ["audit-2026-01-11.jsonl", "notes.txt"])
    }

    /// A reload's shorter `audit.retention_days` deletes what is now past it at once.
    @Test func aShorterRetentionFromAReloadDeletesAtOnce() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 30, logger: Logger(label: "test"))
        let event = AuditLog.Event(kind: "batch", actor: "claimed:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "heartbeat")
        for day in 0..<5 { audit.record(event, atMs: Self.day0 + Int64(day) * 86_400_000 + 5) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("audit")).count == 5)
        audit.setRetentionDays(1)
        #expect(audit.retentionDays == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("audit")).sorted() == ["audit-2026-01-04.jsonl", "audit-2026-01-05.jsonl"])
    }

    @Test func aRemovedDirectoryIsMadeAgainAndLongFieldsAreCapped() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 180, logger: Logger(label: "test"))
        try FileManager.default.removeItem(atPath: dir.file("audit"))
        audit.record(.init(kind: "batch", actor: "unauthenticated", action: "POST /v1/batches", httpStatus: 400, outcome: "rejected",
                           batch: String(repeating: "e", count: 100_000), reason: String(repeating: "r", count: 100_000)), atMs: Self.day0)
        let line = try String(contentsOfFile: dir.file("audit/audit-2026-01-01.jsonl"), encoding: .utf8)
        #expect(line.count < 1200 && line.hasSuffix("}\n"))
    }

    @Test func theSectionIsRead() throws {
        let config = try AggregatorConfig.parse(yaml: "audit:\n  dir: /var/log/tributary\n  retention_days: 400\n", file: "a.yaml")
        #expect(config.auditDirectory == "/var/log/tributary" && config.auditRetentionDays == 400)
        #expect(try AggregatorConfig.parse(yaml: "", file: "a.yaml").auditRetentionDays == 180)
        do {
            _ = try AggregatorConfig.parse(yaml: "audit:\n  retention_days: 0\n", file: "a.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.key == "audit.retention_days", "\(error)")
        }
    }

    /// Issue 25, item 2: one client's refusals wrote a line each (1 MB a second, 89 GB a day).
    /// The same refusal is written once, then counted for a minute, and written as one line.
    @Test func repeatedRefusalsAreCountedNotWritten() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 180, logger: Logger(label: "test"))
        func refusal(_ peer: String) -> AuditLog.Event {
            .init(kind: "batch", actor: "unauthenticated", action: "POST /v1/batches", httpStatus: 401, outcome: "rejected",
                  batch: "gw-x/e/1", reason: "wrong token", peer: peer, claimed: "gw-x")
        }
        for i in 0..<3000 { audit.record(refusal("10.0.0.1"), atMs: Self.day0 + Int64(i)) }
        audit.record(refusal("10.0.0.2"), atMs: Self.day0 + 3000)
        let path = dir.file("audit/audit-2026-01-01.jsonl")
        var lines = try Self.lines(path)
        #expect(lines.count == 2, "one line per address so far")
        #expect(lines[0]["peer"] == .string("10.0.0.1") && lines[0]["claimed"] == .string("gw-x") && lines[0]["repeats"] == nil)
        // The minute is over: the next event writes the count.
        audit.record(.init(kind: "batch", actor: "gateway:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "accepted"),
                     atMs: Self.day0 + 61_000)
        lines = try Self.lines(path)
        #expect(lines.count == 4, "\(lines)")
        let summary = try #require(lines.first { $0["repeats"] != nil })
        #expect(summary["repeats"] == .integer(2999) && summary["peer"] == .string("10.0.0.1"))
        #expect(summary["first_repeat"] == .string("2026-01-01T00:00:00.001Z") && summary["last_repeat"] == .string("2026-01-01T00:00:02.999Z"))
        // Accepted batches are each written.
        for i in 0..<3 {
            audit.record(.init(kind: "batch", actor: "gateway:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "accepted"),
                         atMs: Self.day0 + 62_000 + Int64(i))
        }
        #expect(try Self.lines(path).count == 7)
    }

    @Test func theDirectoryIsCappedAndWhatIsNotWrittenIsCounted() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 180, maxBytes: 1000, logger: Logger(label: "test"))
        for i in 0..<20 {
            audit.record(.init(kind: "batch", actor: "gateway:gw-\(i)", action: "POST /v1/batches", httpStatus: 200, outcome: "accepted"),
                         atMs: Self.day0 + Int64(i))
        }
        let size = try FileManager.default.attributesOfItem(atPath: dir.file("audit/audit-2026-01-01.jsonl"))[.size] as? Int ?? 0
        #expect(size <= 1000 && size > 800)
        #expect(audit.unwrittenEvents > 0 && audit.unwrittenEvents < 20)
    }

    /// Issue 25, item 6: an audit file planted as a symbolic link is not written through.
    @Test func aSymlinkedDayFileIsNotFollowed() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 180, logger: Logger(label: "test"))
        try "precious\n".write(toFile: dir.file("victim"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir.file("audit/audit-2026-01-01.jsonl"), withDestinationPath: dir.file("victim"))
        audit.record(.init(kind: "batch", actor: "gateway:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "accepted"), atMs: Self.day0)
        #expect(try String(contentsOfFile: dir.file("victim"), encoding: .utf8) == "precious\n")
    }

    /// A day file someone else made first in a shared audit.dir is not written to (they could
    /// read or change it); one of ours open to others is closed up.
    @Test(.enabled(if: getuid() == 0, "needs root to make a file of another user"))
    func aDayFileOfAnotherUserIsNotWritten() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 180, logger: Logger(label: "test"))
        let planted = dir.file("audit/audit-2026-01-01.jsonl")
        try "".write(toFile: planted, atomically: false, encoding: .utf8)
        chmod(planted, 0o666)
        chown(planted, 65534, 65534)
        audit.record(.init(kind: "batch", actor: "gateway:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "accepted"), atMs: Self.day0)
        #expect(try String(contentsOfFile: planted, encoding: .utf8).isEmpty && audit.unwrittenEvents == 1)
        let loose = dir.file("audit/audit-2026-01-02.jsonl")
        try "".write(toFile: loose, atomically: false, encoding: .utf8)
        chmod(loose, 0o644)
        audit.record(.init(kind: "batch", actor: "gateway:gw-1", action: "POST /v1/batches", httpStatus: 200, outcome: "accepted"),
                     atMs: Self.day0 + 86_400_000)
        var info = stat()
        #expect(stat(loose, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(try Self.lines(loose).count == 1)
    }

    /// Distinct paths, reasons or claimed gateways from one address are one kind of refusal:
    /// 20,000 GETs of /v1/gateways/ID without a token wrote 20,006 lines.
    @Test func refusalsDifferingOnlyInWhatTheClientChoseAreCountedTogether() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let audit = try AuditLog(directory: dir.file("audit"), retentionDays: 180, logger: Logger(label: "test"))
        for i in 0..<500 {
            audit.record(.init(kind: "operator", actor: "unauthenticated", action: "GET /v1/gateways/gw-\(i)", httpStatus: 401, outcome: "refused",
                               reason: "no operator token", peer: "10.0.0.9", claimed: "gw-\(i)"), atMs: Self.day0 + Int64(i))
        }
        audit.flush(atMs: Self.day0 + 1000)
        let lines = try Self.lines(dir.file("audit/audit-2026-01-01.jsonl"))
        #expect(lines.count == 2 && lines[1]["repeats"] == .integer(499), "\(lines)")
    }
}
