import Foundation
import Logging
import Synchronization
import Testing
@testable import TributaryLogging

@Suite struct JSONLogHandlerTests {
    @Test func oneObjectPerLineWithMetadataAsMembers() throws {
        let line = JSONLogHandler.line(level: .warning, label: "tributary-agent", message: "batch not delivered; will retry",
                                       metadata: ["gateway": "gw-1", "batch": "gw-1/ab/7", "reason": "503 \"sink\"\nunavailable\t\u{1}"],
                                       date: Date(timeIntervalSince1970: 1_795_000_000.123))
        #expect(line.hasSuffix("}\n"))
        #expect(line.filter { $0 == "\n" }.count == 1)
        #expect(line.hasPrefix(#"{"ts":"2026-11-18T11:06:40.123Z","level":"warning","label":"tributary-agent","msg":"batch not delivered; will retry","batch":"gw-1/ab/7","gateway":"gw-1","#))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["reason"] == "503 \"sink\"\nunavailable\t\u{1}")
        #expect(object["gateway"] == "gw-1")
        #expect(object.count == 7)
    }

    @Test func handlerMergesLoggerAndEventMetadata() throws {
        let lines = LineCollector()
        var logger = Logger(label: "t") { JSONLogHandler(label: $0, write: lines.append) }
        logger[metadataKey: "gateway"] = "gw-9"
        logger.info("sent", metadata: ["batch": "gw-9/e/1", "gateway": "overridden"])
        logger.debug("not shown at info")
        let written = lines.all
        #expect(written.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(written[0].utf8)) as? [String: String])
        #expect(object["gateway"] == "overridden")
        #expect(object["batch"] == "gw-9/e/1")
        #expect(object["msg"] == "sent")
        #expect(object["level"] == "info")
    }
}

/// Issue 25, item 3: client text (a batch's epoch, a topic, a reason) in a log line must not
/// start a forged line, drive the terminal, or reverse what follows it.
@Suite("log lines hold client text safely")
struct LogEscapingTests {
    static let hostile = "e\u{1B}[2J\r\nFORGED line\u{202E}txet\\u{1B}"

    @Test func theTextFormatShowsEscapesInsteadOfObeyingThem() {
        let lines = LineCollector()
        let logger = Logger(label: "t") { TextLogHandler(label: $0, write: lines.append) }
        logger.warning("batch \(Self.hostile) refused", metadata: ["batch": "\(Self.hostile)"])
        let line = lines.all[0]
        #expect(line.split(separator: "\n").count == 1 && line.hasSuffix("\n"))
        #expect(!line.unicodeScalars.contains { $0.value == 0x1B || $0 == "\r" || $0.value == 0x202E }, "\(line)")
        #expect(line.contains("e\\u{1B}[2J\\u{D}\\u{A}FORGED line\\u{202E}txet\\\\u{1B}"), "\(line)")
        #expect(line.contains(" warning t: batch=") && line.contains("] batch e\\u{1B}"))
    }

    /// An epoch of `e status=200 reason=accepted` read as two more fields to a key=value parser.
    @Test func aValueWithSpacesOrEqualsSignsIsQuoted() {
        let line = TextLogHandler.line(level: .warning, label: "t", message: "batch refused",
                                       metadata: ["batch": "gw/e status=200 \"x\"/1", "status": "400"], source: "s", timestamp: "T")
        #expect(line == "T warning t: batch=\"gw/e status=200 \\\"x\\\"/1\" status=400 [s] batch refused\n", "\(line)")
    }

    @Test func theJSONFormatEscapesThemToo() throws {
        let line = JSONLogHandler.line(level: .warning, label: "t", message: Self.hostile, metadata: ["batch": "\(Self.hostile)"], date: Date())
        #expect(line.split(separator: "\n").count == 1)
        #expect(!line.unicodeScalars.contains { $0.value == 0x1B || $0 == "\r" || $0.value == 0x202E }, "\(line)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["msg"] == Self.hostile && object["batch"] == Self.hostile, "the text survives, escaped")
    }
}

final class LineCollector: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }
}
