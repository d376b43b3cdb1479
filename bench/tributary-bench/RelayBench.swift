import Foundation
import TributaryCore
import TributarySimulator
import TributaryTesting

/// 9. Tiers: `tributary-sim fleet` straight at a province, then the same fleet at a relay
/// (`sink: none`) in front of another province, timed until the province's sink holds every
/// reading. Then the relay's drain: the province is down while a fleet at a live rate sends into
/// the relay's spool, then comes back; the drain rate against the rate the fleet offered meanwhile.
func relayBench(bin: String, gateways: Int, batches: Int, outageSeconds: Int) async throws -> [BenchResult] {
    // Straight at the province: the baseline, in the same run.
    var direct = try await Tier(bin: bin, relayed: false)
    let (directSeconds, directCount) = try await direct.runFleet(gateways: gateways, pacing: ["--batches", String(batches), "--rate", "200"], provinceUp: true)
    await direct.stop()

    var relayed = try await Tier(bin: bin, relayed: true)
    let (relayedSeconds, relayedCount) = try await relayed.runFleet(gateways: gateways, pacing: ["--batches", String(batches), "--rate", "200"], provinceUp: true)
    let usage = relayed.relay.flatMap { processUsage($0.pid) }
    let exact = try await relayed.verify()
    await relayed.stop()

    // The outage: a fleet at a live rate (20 readings/s per gateway, batches of 100 every ~5 s)
    // for `outageSeconds` while the province is down.
    var outage = try await Tier(bin: bin, relayed: true)
    let (offeredSeconds, spooled) = try await outage.runFleet(gateways: gateways, pacing: ["--duration", "\(outageSeconds)s", "--rate", "20"],
                                                              provinceUp: false)
    let drainSeconds = try await timed { try await outage.startProvinceAndWaitForAll() }
    let drainExact = try await outage.verify()
    await outage.stop()

    var through = BenchResult(name: "relay", what: "\(gateways) gateways x \(batches) batches of 100 through a relay to the province, until the province holds them",
                              value: Double(relayedCount) / relayedSeconds, unit: "readings/s",
                              baseline: "the same fleet straight at a province", baselineValue: Double(directCount) / directSeconds, goal: ">= 0.7x")
    through.met = (through.ratio ?? 0) >= 0.7 && exact
    through.notes = [
        "verify": exact ? "exact" : "NOT exact",
        "relay_cpu_us_per_reading": usage.map { String(format: "%.1f", $0.cpuSeconds * 1e6 / Double(max(relayedCount, 1))) } ?? "-",
        "relay_rss_mb": usage.map { String(format: "%.1f", Double($0.rssKB) / 1024) } ?? "-",
    ]
    var drain = BenchResult(name: "relay-drain", what: "a relay's spool of \(spooled) readings drained after the province was down while the fleet sent",
                            value: Double(spooled) / drainSeconds, unit: "readings/s",
                            baseline: "the rate the fleet offered meanwhile", baselineValue: Double(spooled) / offeredSeconds, goal: ">= 10x")
    drain.met = (drain.ratio ?? 0) >= 10 && drainExact
    drain.notes = ["verify": drainExact ? "exact" : "NOT exact"]
    return [through, drain]
}

/// A province aggregator, optionally behind a relay with no sink of its own, on loopback.
private struct Tier {
    let dir: TemporaryDirectory
    let bin: String
    let provincePort: Int
    let relayPort: Int?
    var province: ChildProcess?
    let relay: ChildProcess?

    init(bin: String, relayed: Bool) async throws {
        self.bin = bin
        dir = try TemporaryDirectory(prefix: "tributary-bench-tier")
        provincePort = try FreePort.allocate()
        guard relayed else {
            relayPort = nil
            relay = nil
            province = try Self.startProvince(bin: bin, dir: dir, port: provincePort)
            try await FreePort.waitUntilListening(provincePort)
            return
        }
        let port = try FreePort.allocate()
        relayPort = port
        try """
            listen: 127.0.0.1:\(port)
            data_dir: \(dir.file("relay"))
            relay_id: bench-relay
            sink: none
            upstream:
              url: http://127.0.0.1:\(provincePort)
              retry_max_ms: 1000
            """.write(toFile: dir.file("relay.yaml"), atomically: true, encoding: .utf8)
        relay = try ChildProcess(executable: bin + "/tributary-aggregator", arguments: ["--config", dir.file("relay.yaml"), "--log-level", "warning"],
                                 logFile: dir.file("relay.log"))
        try await FreePort.waitUntilListening(port)
    }

    static func startProvince(bin: String, dir: TemporaryDirectory, port: Int) throws -> ChildProcess {
        try ChildProcess(executable: bin + "/tributary-aggregator",
                         arguments: ["--listen", "127.0.0.1:\(port)", "--data-dir", dir.file("province"), "--log-level", "warning"],
                         logFile: dir.file("province.log"))
    }

    var sink: String { "sqlite:" + dir.file("province/sink.sqlite") }
    var manifestPath: String { dir.file("fleet.jsonl") }

    /// Runs the fleet; with the province up, returns when the province holds every reading
    /// acknowledged (seconds from the start, readings). With it down, when the fleet ends.
    mutating func runFleet(gateways: Int, pacing: [String], provinceUp: Bool) async throws -> (Double, Int) {
        if provinceUp && province == nil {
            province = try Self.startProvince(bin: bin, dir: dir, port: provincePort)
            try await FreePort.waitUntilListening(provincePort)
        }
        let target = relayPort ?? provincePort
        let started = ContinuousClock.now
        let fleet = try ChildProcess(executable: bin + "/tributary-sim", arguments: [
            "fleet", "--aggregator", "http://127.0.0.1:\(target)", "--gateways", String(gateways),
            "--batch-size", "100", "--manifest", manifestPath,
        ] + pacing, logFile: dir.file("fleet.out"))
        _ = await fleet.wait()
        let count = try Manifest.read(from: manifestPath).entries.count
        if provinceUp { try await waitForAll(count) }
        return ((ContinuousClock.now - started).inSeconds, count)
    }

    mutating func startProvinceAndWaitForAll() async throws {
        province = try Self.startProvince(bin: bin, dir: dir, port: provincePort)
        try await FreePort.waitUntilListening(provincePort)
        try await waitForAll(try Manifest.read(from: manifestPath).entries.count)
    }

    /// Until the province's sink holds `count` readings (counted in SQL: cheap to poll).
    func waitForAll(_ count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(600)
        while (try? countRows(sqlite: dir.file("province/sink.sqlite"))) ?? 0 < count {
            guard ContinuousClock.now < deadline else { throw BenchError("the province holds fewer than \(count) readings after 600 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func verify() async throws -> Bool {
        try await Verifier.verify(try Manifest.read(from: manifestPath), sink: sink).passed
    }

    func stop() async {
        if let relay { _ = await relay.stop(signal: SIGTERM) }
        if let province { _ = await province.stop(signal: SIGTERM) }
        dir.remove()
    }
}
