import Foundation
import Testing
import TributaryAgent
import TributarySimulator
import TributaryTesting

/// The gateway's wall clock stepped while the agent runs, as NTP does to a gateway that booted
/// with a wrong clock. The agent executable's fault injection (`WallClockFault`) moves its wall
/// clock only: not the monotonic clock, not the machine's.
@Suite("clock steps", .serialized)
struct ClockStepTests {
    /// Issue 23, item 6: with the clock 2 h ahead, then stepped back, the oldest unsealed
    /// reading looked two hours in the future and nothing was sealed until the clock caught
    /// up (0 of 30 readings in the sink after 65 s). Ages are now monotonic.
    @Test("the gateway clock stepped two hours back or forward: every reading is sealed and delivered, once",
          arguments: [("7200", "0"), ("0", "7200")])
    func clockStep(before: String, after: String) async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-clock", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let offsetFile = harness.dir.file("faketime")
        try before.write(toFile: offsetFile, atomically: true, encoding: .utf8)
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent(environment: [WallClockFault.environmentVariable: offsetFile])
        // Fewer readings than a batch holds, so only their age seals them.
        let first = try await harness.publish(10, rate: 50).value
        #expect(try await harness.verifyWhenComplete(first).passed)
        try after.write(toFile: offsetFile, atomically: true, encoding: .utf8)
        let second = try await harness.publish(20, rate: 50).value
        var both = first
        both.append(second)
        let report = try await harness.verifyWhenComplete(both, timeout: .seconds(30))
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
    }

    /// The review stepped the clock 2 h forward with the aggregator down and
    /// `retention_hours: 1`: retention, whose timer was monotonic but whose cutoff was not,
    /// deleted 950 of 1,000 fresh readings (counted as dropped). Retention now never counts more
    /// time than has passed on the monotonic clock.
    @Test("the gateway clock stepped two hours forward: retention deletes nothing fresh")
    func retentionIgnoresAForwardStep() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-retain", aggregatorSettings: FaultTests.fast,
                                               bufferSettings: ["retention_hours: 1"])
        defer { harness.dir.remove() }
        let offsetFile = harness.dir.file("clock-offset")
        try "0".write(toFile: offsetFile, atomically: true, encoding: .utf8)
        let agent = try await harness.startAgent(environment: [WallClockFault.environmentVariable: offsetFile])
        let manifest = try await harness.publish(200, rate: 200).value
        let buffer = harness.dir.file("agent/buffer.sqlite")
        try await eventually("the agent took every reading") { try FaultTests.counter("ingested_total", in: buffer) >= Int64(manifest.entries.count) }
        try "7200".write(toFile: offsetFile, atomically: true, encoding: .utf8)
        // Retention runs once a minute: this wait lets it run after the step.
        try await Task.sleep(for: .seconds(65))
        #expect(try FaultTests.counter("dropped_total", in: buffer) == 0)
        let aggregator = try await harness.startAggregator()
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
    }
}
