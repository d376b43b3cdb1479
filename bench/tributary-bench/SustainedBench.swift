import Foundation
import TributarySimulator
import TributaryTesting

/// 5. The highest rate the agent sustains end to end (issue 27), next to the broker's own
/// ceiling. A bounded search: the offered rate steps up by `step` readings/s from `step`, each
/// step `stepSeconds` long on a fresh rig (broker, aggregator with its SQLite sink, agent); a
/// step passes when the publisher held at least 90% of the rate (its connection and its last
/// acknowledgements included), the sink acknowledged the last reading within `lagBoundSeconds`
/// of the publisher's end (the agent seals a batch at least every second), and `verify` is
/// exact. The search stops at the first step that fails, or at `maxSteps`. The issue asks for
/// 60 s a step; a benchmark run cannot spend that, so a step here is shorter, and a rate that
/// passes it may still fall behind over a longer run by less than `lagBoundSeconds` per step.
/// The baseline is the broker's ceiling: the same publisher as fast as it goes, drained by a
/// bare `mosquitto_sub -q 1` (readings/s, five a message).
func sustainedBench(bin: String, step: Double, stepSeconds: Int, maxSteps: Int, lagBoundSeconds: Double) async throws -> BenchResult {
    // Readings/s: five a message.
    let ceiling = 5 * (try await mosquittoSubDrainRate(bin: bin, messages: Int(step / 5) * stepSeconds))

    var highest = 0.0
    var steps: [String] = []
    for index in 1...maxSteps {
        let rate = step * Double(index)
        let outcome = try await sustainedStep(bin: bin, readingsPerSecond: rate, seconds: stepSeconds, lagBoundSeconds: lagBoundSeconds)
        steps.append("\(human(rate)): \(outcome.description)")
        guard outcome.passed else { break }
        highest = rate
    }
    var result = BenchResult(name: "sustained", what: "highest offered rate the agent sustains end to end for \(stepSeconds) s (verify exact, lag <= \(Int(lagBoundSeconds)) s)",
                             value: highest, unit: "readings/s",
                             baseline: "the broker's ceiling: the same publisher, as fast as it goes, drained by mosquitto_sub -q 1", baselineValue: ceiling)
    result.notes = ["steps": steps.joined(separator: "; "), "step_seconds": String(stepSeconds),
                    "search": "from \(human(step)) readings/s up by \(human(step)), stopping at the first step that fails; the issue's 60 s steps are too long for a benchmark run"]
    return result
}

private struct StepOutcome {
    var offered: Double
    var lagSeconds: Double?
    var exact: Bool
    var target: Double
    var lagBound: Double
    var passed: Bool { offered >= 0.9 * target && (lagSeconds.map { $0 <= lagBound } ?? false) && exact }
    var description: String {
        "offered \(human(offered))/s, lag \(lagSeconds.map { String(format: "%.1f s", $0) } ?? "not caught up"), \(exact ? "exact" : "NOT exact")"
            + (passed ? "" : ", failed")
    }
}

private func sustainedStep(bin: String, readingsPerSecond: Double, seconds: Int, lagBoundSeconds: Double) async throws -> StepOutcome {
    let rig = try await Rig(bin: bin)
    let aggregator = try await rig.startAggregator()
    let agent = try await rig.startAgent()
    let messages = Int(readingsPerSecond / 5) * seconds
    let publisher = try rig.publisher(messages: messages, rate: readingsPerSecond / 5)
    var manifest = Manifest(messagesPublished: 0, entries: [])
    let publishSeconds = try await timed { manifest = try await publisher.run() }
    // Lag: from the last publish until the sink acknowledged the last reading, if within the bound.
    let lag = try? await timed {
        try await rig.waitForAgentCounter(.acknowledged, atLeast: Int64(manifest.entries.count), timeout: .milliseconds(Int64(lagBoundSeconds * 1000)))
    }
    var exact = false
    if lag != nil {
        exact = try await Verifier.verify(manifest, sink: rig.sink).passed
    }
    await rig.stop(agent, aggregator)
    return StepOutcome(offered: Double(manifest.entries.count) / publishSeconds, lagSeconds: lag, exact: exact,
                       target: readingsPerSecond, lagBound: lagBoundSeconds)
}
