import Foundation
import Testing
import TributaryCore
@testable import TributarySimulator

@Suite("fleet simulator manifest writer")
struct FleetReportTests {
    /// The streamed manifest reads back as `Manifest.write` would have written it.
    @Test func streamedManifestReadsBack() throws {
        let path = NSTemporaryDirectory() + "fleet-manifest-\(UInt64.random(in: 0...UInt64.max)).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let readings = (0..<25).map { i in
            Reading(gatewayID: "fleet-0001", sensorID: "s-0\(i % 3)", metric: "value", topic: "t", timeMs: 1_000 + Int64(i),
                    receivedAtMs: 1_000 + Int64(i), value: .double(Double(i) / 4))
        }
        let writer = try ManifestWriter(path: path)
        writer.append(Array(readings[..<10]))
        writer.append(Array(readings[10...]))
        #expect(try writer.finish(messages: 3) == 25)
        let manifest = try Manifest.read(from: path)
        #expect(manifest.messagesPublished == 3)
        #expect(manifest.entries == readings.map(Manifest.Entry.init))
    }
}
