import Foundation
import TributaryCore
import TributaryRuntime
import TributarySimulator
import TributaryTesting

/// 9. Province scale (issue 26): ten thousand virtual gateways at 1 reading/s each against one
/// release aggregator, its CPU and memory sampled every second; then a burst of three times
/// the rate for a minute, and the time the fleet takes to catch up; then, with
/// clickhouse-server installed, the 1x run into ClickHouse. Long: only with `--only fleet-10k`.
/// Each row's value is the served rate, its baseline the offered one (what the gateways'
/// schedules sealed in the same run).
func fleetScaleBench(bin: String, gateways: Int, seconds: Int, runs: Int, out: String, parts: Set<String> = ["1x", "burst", "clickhouse"],
                     maxInFlightBatches: Int? = nil, connections: Int? = nil) async throws -> [BenchResult] {
    var results: [BenchResult] = []
    let limits = FleetScaleLimits(maxInFlightBatches: maxInFlightBatches, connections: connections)
    for run in 1...max(1, runs) where parts.contains("1x") {
        // A profile of the aggregator on the first run only: perf costs it a little CPU.
        let profile = run == 1 && FileManager.default.isExecutableFile(atPath: "/usr/bin/perf") ? out : nil
        var result = try await fleetScaleRun(bin: bin, gateways: gateways, seconds: seconds, burst: nil, clickHouse: false, profileInto: profile, limits: limits)
        if runs > 1 { result.name += "-run\(run)" }
        results.append(result)
    }
    if parts.contains("burst") {
        results.append(try await fleetScaleRun(bin: bin, gateways: gateways, seconds: seconds * 2, burst: "3:\(seconds)", clickHouse: false, profileInto: nil, limits: limits))
    }
    if !parts.contains("clickhouse") {
    } else if ClickHouseServer.unavailableReason == nil {
        results.append(try await fleetScaleRun(bin: bin, gateways: gateways, seconds: seconds, burst: nil, clickHouse: true, profileInto: nil, limits: limits))
    } else {
        FileHandle.standardError.write(Data("  fleet-10k-clickhouse: skipped, no clickhouse-server\n".utf8))
    }
    return results
}

/// The aggregator's CPU (share of the whole machine, every core) and resident memory, sampled
/// each second until cancelled.
private struct UsageSamples {
    var cpuPercent: [Double] = []
    var peakRSSKB = 0
    var meanCPU: Double { cpuPercent.isEmpty ? 0 : cpuPercent.reduce(0, +) / Double(cpuPercent.count) }
    var peakCPU: Double { cpuPercent.max() ?? 0 }
}

private func sampleUsage(of pid: pid_t) -> Task<UsageSamples, Never> {
    Task {
        var samples = UsageSamples()
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        var last = processUsage(pid)
        var lastAt = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard let usage = processUsage(pid) else { break }
            let now = ContinuousClock.now
            if let last {
                samples.cpuPercent.append((usage.cpuSeconds - last.cpuSeconds) / max((now - lastAt).inSeconds, 0.001) / cores * 100)
            }
            samples.peakRSSKB = max(samples.peakRSSKB, usage.rssKB)
            last = usage
            lastAt = now
        }
        return samples
    }
}

/// What the benchmark sets in the aggregator's `limits:` beyond what one address carrying the fleet needs.
struct FleetScaleLimits {
    var maxInFlightBatches: Int?
    /// The simulator's connections: past the aggregator's admission limit, requests meet 429s
    /// (each real gateway has its own connection); within it, they wait in the simulator's pool.
    var connections: Int?
}

private func fleetScaleRun(bin: String, gateways: Int, seconds: Int, burst: String?, clickHouse: Bool, profileInto out: String?,
                           limits: FleetScaleLimits) async throws -> BenchResult {
    let name = "fleet-10k" + (burst != nil ? "-burst" : "") + (clickHouse ? "-clickhouse" : "")
    FileHandle.standardError.write(Data("  \(name): \(gateways) gateways for \(seconds) s...\n".utf8))
    let dir = try TemporaryDirectory(prefix: "tributary-bench-fleet")
    defer { dir.remove() }
    let port = try FreePort.allocate()
    let server = clickHouse ? try await ClickHouseServer(directory: dir.file("clickhouse")) : nil
    let sink = server?.url(database: "fleet") ?? "sqlite:" + dir.file("aggregator/sink.sqlite")

    // Every gateway proves itself with a token, as in production.
    let tokenFile = dir.file("gateway-tokens")
    var generator = SystemRandomNumberGenerator()
    let tokens = (0..<gateways).map { index in
        "\(FleetSimulator.gatewayID(index: index, prefix: "fleet")) bench-\(String(generator.next(), radix: 16))-\(String(generator.next(), radix: 16))"
    }
    _ = try TemporaryDirectory.writeSecret(tokens.joined(separator: "\n") + "\n", to: tokenFile)
    let config = """
        listen: 127.0.0.1:\(port)
        data_dir: \(dir.file("aggregator"))
        sink: \(sink)
        gateway_auth:
          token_file: \(tokenFile)
        limits:
          # The whole fleet comes from one address, 127.0.0.1, as a NAT'd province would: the
          # registry must hold every gateway, and the per-address limits must let one address
          # carry all of them (its connections, and the whole of admission control).
          max_gateways: \(max(20_000, gateways * 2))
          max_connections_per_address: 16384
          max_in_flight_per_address: 100000          # as much as all of admission control
          max_in_flight_bytes_per_address: 17179869184
        """ + (limits.maxInFlightBatches.map { "\n  max_in_flight_batches: \($0)" } ?? "")
    try config.write(toFile: dir.file("aggregator.yaml"), atomically: true, encoding: .utf8)
    let aggregator = try ChildProcess(executable: bin + "/tributary-aggregator",
                                      arguments: ["--config", dir.file("aggregator.yaml"), "--log-level", "warning"],
                                      logFile: dir.file("aggregator.log"))
    try await FreePort.waitUntilListening(port)

    let manifestPath = dir.file("fleet.jsonl")
    let output = dir.file("fleet.out")
    let sampling = sampleUsage(of: aggregator.pid)
    var profiler: ChildProcess?
    if out != nil {
        // cpu-clock: a software event (no hardware counters on this machine), with call graphs.
        profiler = try ChildProcess(executable: "/usr/bin/perf", arguments: [
            "record", "-e", "cpu-clock", "-g", "-p", String(aggregator.pid), "-o", dir.file("perf.data"), "--", "sleep", String(max(10, seconds - 10)),
        ], logFile: dir.file("perf.log"))
    }
    let fleet = try ChildProcess(executable: bin + "/tributary-sim", arguments: [
        "fleet", "--aggregator", "http://127.0.0.1:\(port)", "--gateways", String(gateways), "--rate", "1", "--batch-size", "10",
        "--duration", "\(seconds)s", "--token-file", tokenFile, "--manifest", manifestPath, "--json",
    ] + (burst.map { ["--burst", $0] } ?? []) + (limits.connections.map { ["--connections", String($0)] } ?? []), logFile: output)
    let fleetStatus = await fleet.wait()
    sampling.cancel()
    let usage = await sampling.value
    var profileNote: String?
    if let profiler, let out {
        _ = await profiler.wait()
        profileNote = try? await perfTop(data: dir.file("perf.data"), into: out, lines: 25)
    }

    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    guard let report = fleetReport(text) else {
        _ = await aggregator.stop(signal: SIGTERM)
        await server?.stop()
        throw BenchError("fleet printed no report (exit \(fleetStatus)): \(text.suffix(500))")
    }
    let verify = try await Verifier.verify(try Manifest.read(from: manifestPath), sink: sink)
    // What an operator's reads cost at this size: the aggregator's CPU per answer, and its size.
    let token = (try? String(contentsOfFile: dir.file("aggregator/admin-token"), encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    var reads: [String: String] = [:]
    for (name, path) in [("summary", "/v1/fleet/summary"), ("sort_lag_limit_200", "/v1/fleet?sort=lag&limit=200"), ("everything", "/v1/fleet")] {
        if let cost = try await adminReadCost(pid: aggregator.pid, url: "http://127.0.0.1:\(port)\(path)", token: token, dir: dir) {
            reads["read_\(name)"] = String(format: "%.1f ms CPU, %d bytes", cost.cpuMs, cost.bytes)
        }
    }
    let aggregatorLog = (try? String(contentsOfFile: dir.file("aggregator.log"), encoding: .utf8)) ?? ""
    _ = await aggregator.stop(signal: SIGTERM)
    await server?.stop()

    let ackP99Ms = report("ack_ms_p99"), maxLag = report("lag_s_max")
    let peakRSSMB = Double(usage.peakRSSKB) / 1024
    var result = BenchResult(name: name, what: "\(gateways) gateways at 1 reading/s, batches of 10, \(seconds) s"
                                 + (burst.map { ", burst \($0.replacingOccurrences(of: ":", with: "x for ")) s" } ?? "")
                                 + (clickHouse ? ", ClickHouse sink" : ", SQLite sink") + ", verify exact",
                             value: report("served_readings_per_second"), unit: "readings/s",
                             baseline: "offered (sealed on the gateways' schedules)", baselineValue: report("offered_readings_per_second"),
                             goal: ">= 0.95x, ack p99 < 1 s, max lag < 30 s, RSS < 1 GB, CPU < 60%" + (burst != nil ? ", catch-up <= 60 s" : ""))
    var missed: [String] = []
    if (result.ratio ?? 0) < 0.95 { missed.append("served/offered") }
    if burst == nil, ackP99Ms >= 1000 { missed.append("ack p99") }
    if burst == nil, maxLag >= 30 { missed.append("max lag") }
    if peakRSSMB >= 1024 { missed.append("aggregator RSS") }
    if usage.meanCPU >= 60 { missed.append("aggregator CPU") }
    if !verify.passed { missed.append("verify") }
    let catchUp = report.raw("catch_up_seconds")
    if burst != nil, (catchUp == nil || catchUp! > 60) { missed.append("catch-up") }
    result.met = missed.isEmpty
    result.notes = [
        "ack_ms_p50": String(format: "%.1f", report("ack_ms_p50")), "ack_ms_p99": String(format: "%.1f", ackP99Ms),
        "lag_s_max": String(format: "%.1f", maxLag), "lag_s_p99_across_gateways": String(format: "%.1f", report("lag_s_p99")),
        "gateways_behind_30s": String(Int(report("gateways_behind_30s"))),
        "busy_429": String(Int(report("busy_429"))), "unavailable_5xx": String(Int(report("unavailable_5xx"))),
        "unreachable": String(Int(report("unreachable"))), "undelivered": String(Int(report("undelivered"))),
        "aggregator_peak_rss_mb": String(format: "%.0f", peakRSSMB),
        "aggregator_cpu_pct_of_machine_mean": String(format: "%.1f", usage.meanCPU),
        "aggregator_cpu_pct_of_machine_peak": String(format: "%.1f", usage.peakCPU),
        "simulator_peak_rss_mb": String(format: "%.0f", report("simulator_peak_rss_kb") / 1024),
        "readings_acknowledged": String(Int(report("readings"))),
        "verify": verify.passed ? "exact (missing 0, duplicates 0)" : verify.description.split(separator: "\n").prefix(3).joined(separator: "; "),
        "aggregator_warnings": String(aggregatorLog.split(separator: "\n").count),
    ]
    result.notes.merge(reads) { a, _ in a }
    if burst != nil { result.notes["catch_up_seconds"] = catchUp.map { String(format: "%.1f", $0) } ?? "not caught up" }
    if !missed.isEmpty { result.notes["goals_missed"] = missed.joined(separator: ", ") }
    if let profileNote { result.notes["profile"] = profileNote }
    // The figures as soon as they are known: the whole benchmark takes minutes.
    FileHandle.standardError.write(Data("  \(name): \(result.notes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))\n".utf8))
    return result
}

/// The fleet's JSON report line, as numbers by key (a JSON null is absent).
struct FleetReport {
    let fields: [(String, JSONValue)]
    func raw(_ name: String) -> Double? {
        switch fields.first(where: { $0.0 == name })?.1 {
        case .integer(let i)?: Double(i)
        case .double(let d)?: d
        default: nil
        }
    }
    func callAsFunction(_ name: String) -> Double { raw(name) ?? 0 }
}

func fleetReport(_ output: String) -> FleetReport? {
    guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("{") }),
          case .object(let fields)? = try? JSONValue.parse(Array(line.utf8)) else { return nil }
    return FleetReport(fields: fields)
}

/// The top of a perf profile (self time by symbol), written beside the JSON results; returns its path.
private func perfTop(data: String, into out: String, lines: Int) async throws -> String {
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
    let path = "\(out)/\(stamp)-fleet-10k-aggregator-profile.txt"
    let report = try ChildProcess(executable: "/usr/bin/perf", arguments: [
        "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "-g", "none", "--percent-limit", "0.5",
    ], logFile: path + ".full")
    _ = await report.wait()
    let full = (try? String(contentsOfFile: path + ".full", encoding: .utf8)) ?? ""
    let top = full.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }.prefix(lines)
    try (top.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    try? FileManager.default.removeItem(atPath: path + ".full")
    return path
}

/// The aggregator's CPU per answer to an operator's GET (averaged over 5, as the CPU clock
/// ticks every 10 ms), and the answer's size; nil if curl is missing or the read fails.
private func adminReadCost(pid: pid_t, url: String, token: String, dir: TemporaryDirectory) async throws -> (cpuMs: Double, bytes: Int)? {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), let before = processUsage(pid) else { return nil }
    var bytes = 0
    for round in 0..<5 {
        let out = dir.file("curl-\(round).out")
        let curl = try ChildProcess(executable: "/usr/bin/curl", arguments: [
            "-sf", "-o", "/dev/null", "-w", "%{size_download}", "-H", "Authorization: Bearer \(token)", url,
        ], logFile: out)
        guard await curl.wait() == 0 else { return nil }
        bytes = Int((try? String(contentsOfFile: out, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        try? FileManager.default.removeItem(atPath: out)
    }
    guard let after = processUsage(pid) else { return nil }
    return ((after.cpuSeconds - before.cpuSeconds) * 1000 / 5, bytes)
}
