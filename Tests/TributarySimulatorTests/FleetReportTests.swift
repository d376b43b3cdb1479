import Foundation
import Testing
import TributaryCore
@testable import TributarySimulator

@Suite("fleet simulator report and manifest writer")
struct FleetReportTests {
    @Test func parsesABurst() {
        #expect(FleetSimulator.Burst("3:60") == FleetSimulator.Burst(factor: 3, seconds: 60))
        #expect(FleetSimulator.Burst("1.5:0.5") == FleetSimulator.Burst(factor: 1.5, seconds: 0.5))
        for bad in ["3", "3:", ":60", "0:60", "3:0", "-1:5", "a:b", "3:60:1", "inf:5"] {
            #expect(FleetSimulator.Burst(bad) == nil, "\(bad)")
        }
    }

    @Test func lagPercentilesAndCatchUp() {
        var report = FleetSimulator.Report()
        report.gatewayWorstLags = (1...100).map(Double.init)
        #expect(report.maxLagSeconds == 100 && report.p99LagSeconds == 99 && report.gatewaysBehind30s == 70)
        report.scheduleSeconds = 120
        #expect(report.catchUpSeconds == nil)  // no burst
        report.burst = FleetSimulator.Burst(factor: 3, seconds: 60)
        report.lastBehindSeconds = 85
        #expect(report.catchUpSeconds == 25)
        report.lastBehindSeconds = 30  // never behind after the burst
        #expect(report.catchUpSeconds == 0)
        report.lastBehindSeconds = 121  // still behind when the schedule ended
        #expect(report.catchUpSeconds == nil)
        #expect(report.json.contains("\"catch_up_seconds\":null") && report.json.contains("\"lag_s_p99\":99.000"))
    }

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
