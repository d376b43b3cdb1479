import Foundation
import TributaryCore
import TributaryRuntime

/// One benchmark's figures: what was measured, the baseline measured beside it in the same run,
/// and the ratio the issue sets a goal for. Machines here are noisy and shared, so only ratios
/// within one run are compared, never a figure against a fixed number of seconds.
struct BenchResult: Sendable {
    var name: String
    var what: String
    var value: Double
    var unit: String
    var baseline: String?
    var baselineValue: Double?
    /// value / baseline (or the other way round when `lowerIsBetter`).
    var ratio: Double? {
        guard let baselineValue, baselineValue > 0, value > 0 else { return nil }
        return lowerIsBetter ? baselineValue / value : value / baselineValue
    }
    var lowerIsBetter = false
    /// The goal, as text (">= 0.9x"), and whether it was met; nil when the issue sets none.
    var goal: String?
    var met: Bool?
    var notes: [String: String] = [:]

    var json: String {
        var fields: [(String, String)] = [
            ("name", JSONValue.quoted(name)), ("what", JSONValue.quoted(what)), ("value", number(value)), ("unit", JSONValue.quoted(unit)),
        ]
        if let baseline { fields.append(("baseline", JSONValue.quoted(baseline))) }
        if let baselineValue { fields.append(("baseline_value", number(baselineValue))) }
        if let ratio { fields.append(("ratio", number(ratio))) }
        if let goal { fields.append(("goal", JSONValue.quoted(goal))) }
        if let met { fields.append(("goal_met", met ? "true" : "false")) }
        if !notes.isEmpty {
            fields.append(("notes", "{" + notes.sorted { $0.key < $1.key }.map { "\(JSONValue.quoted($0.key)):\(JSONValue.quoted($0.value))" }.joined(separator: ",") + "}"))
        }
        return "{" + fields.map { "\(JSONValue.quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }
}

func number(_ value: Double) -> String {
    value.isFinite ? String(format: "%.4g", value) : "null"
}

/// The table printed at the end, one row per result.
func table(_ results: [BenchResult]) -> String {
    var rows = [["benchmark", "measured", "baseline (same run)", "ratio", "goal"]]
    for r in results {
        rows.append([
            r.name,
            "\(human(r.value)) \(r.unit)",
            r.baseline.map { "\($0): \(r.baselineValue.map(human) ?? "-")" } ?? "-",
            r.ratio.map { String(format: "%.2fx", $0) } ?? "-",
            r.goal.map { "\($0) \(r.met == true ? "met" : r.met == false ? "NOT met" : "")" } ?? "-",
        ])
    }
    let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }.joined(separator: "\n")
}

func human(_ value: Double) -> String {
    switch abs(value) {
    case 1e6...: String(format: "%.2fM", value / 1e6)
    case 1e4...: String(format: "%.1fk", value / 1e3)
    case 100...: String(format: "%.0f", value)
    default: String(format: "%.2f", value)
    }
}

/// Where and on what the run happened, for the JSON file.
func machineDescription() -> [String: String] {
    var info: [String: String] = [:]
    if let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
        info["cpu"] = cpu.split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?
            .trimmingCharacters(in: .whitespaces)
    }
    info["cores"] = String(ProcessInfo.processInfo.activeProcessorCount)
    info["memory_gib"] = String(format: "%.1f", Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824)
    info["os"] = ProcessInfo.processInfo.operatingSystemVersionString
    return info
}

/// Seconds a block takes on the monotonic clock.
func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    return (ContinuousClock.now - start).inSeconds
}

func timed(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    return (ContinuousClock.now - start).inSeconds
}

/// The median of a few runs (the mean of the middle two for an even count): one slow run on a
/// shared machine does not decide.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
