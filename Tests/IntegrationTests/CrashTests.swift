import Foundation
import Testing
import TributarySimulator
import TributaryTesting

/// kill -9 of the real executables in the middle of a stream: the durability claims in the
/// README, checked with the conservation check.
@Suite("crashes", .serialized)
struct CrashTests {
    static let settings = ["batch_max_age_ms: 100", "batch_max_readings: 250", "retry_initial_ms: 50", "retry_max_ms: 500"]

    @Test("aggregator killed with SIGKILL three times mid-stream: 0 missing, 0 duplicates")
    func aggregatorKilled() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-crash", aggregatorSettings: Self.settings)
        defer { harness.dir.remove() }
        var aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        let publishing = try harness.publish(3000, rate: 600)
        for _ in 0..<3 {
            try await Task.sleep(for: .milliseconds(1200))
            await aggregator.stop(signal: SIGKILL)
            try await Task.sleep(for: .milliseconds(300))
            aggregator = try await harness.startAggregator()
        }
        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed, "\(report)")
        await harness.stop(agent, aggregator)
    }

    @Test("agent killed with SIGKILL three times mid-stream: 0 duplicates, losses within the documented window")
    func agentKilled() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-crash", aggregatorSettings: Self.settings)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        let publishing = try harness.publish(3000, rate: 600)
        let kills = 3
        for _ in 0..<kills {
            try await Task.sleep(for: .milliseconds(1200))
            await agent.stop(signal: SIGKILL)
            agent = try await harness.startAgent(waitForSubscription: false)
        }
        let manifest = try await publishing.value
        // Everything the restarted agent holds is delivered; then nothing more changes.
        let report = try await harness.verifyWhenSettled(manifest)
        #expect(report.duplicates == 0 && report.unexpected == 0, "\(report)")
        // The window: per crash, at most the ingest queue plus the open group (README).
        let queueCapacity = 10_000, readingsPerMessage = 5
        #expect(report.missing <= kills * queueCapacity * readingsPerMessage, "\(report)")
        #expect(report.missing % readingsPerMessage == 0, "losses are whole messages: \(report)")
        print("agent SIGKILL x\(kills): \(report.missing) of \(manifest.entries.count) readings lost (\(report.missing / readingsPerMessage) messages)")
        await harness.stop(agent, aggregator)
    }
}
