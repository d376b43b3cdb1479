import ArgumentParser
import Foundation
import TributaryCore
import TributaryRuntime

/// `make bench`: Tributary against the physical limits and simple baselines, each measured in
/// the same run as the figure it is compared with. Prints a table and writes it as JSON.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-bench",
        abstract: "Benchmarks on a release build: ratios against baselines measured in the same run.",
        discussion: "Benchmarks: buffer, wire, ingest, peer-collectd, sink-sqlite, sink-clickhouse, end-to-end (with agent-cpu, agent-idle-cpu, agent-idle-rss, agent-memory), sustained (the highest rate the agent keeps up with, in 15 s steps), drain, fleet, relay (with relay-drain); and, only when named in --only (it takes about ten minutes), fleet-10k: ten thousand gateways against one aggregator, with a burst and, with clickhouse-server installed, into ClickHouse. Run through `make bench` (it builds in release first).")

    @Option(help: "Comma list of benchmarks to run (default: all).") var only: String?
    @Flag(help: "Smaller counts: a quick look, not figures to keep.") var quick = false
    @Option(help: "Directory for the JSON results.") var out = "bench/results"
    @Option(help: "sink-sqlite, sink-clickhouse: batches of 500 each of the 100 gateways sends (default 4; more, for a run long enough to profile).") var sinkBatches = 4
    @Option(help: "end-to-end: seconds of traffic at 10k readings/s (default 40: the agent's redelivery window, 65,536 messages, fills after 33 s, so the peak is that of an agent that has run a while).") var steadySeconds = 40
    @Option(help: "fleet-10k: how many times to repeat its 1x run (the issue's goal is five in a row).") var runs = 1
    @Option(help: "fleet-10k: which runs, a comma list of 1x, burst, clickhouse (default: all).") var fleetParts: String?
    @Option(help: "fleet-10k: the aggregator's limits.max_in_flight_batches (default: its own default).") var maxInFlightBatches: Int?
    @Option(help: "fleet-10k: the simulator's HTTP connections, all gateways together (default: its own, 256).") var fleetConnections: Int?

    func run() async throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        let wanted = only.map { Set($0.split(separator: ",").map(String.init)) }
        func selected(_ name: String) -> Bool { wanted?.contains(name) ?? true }
        let scale = quick ? 0.2 : 1.0
        let work = NSTemporaryDirectory() + "tributary-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }

        var results: [BenchResult] = []
        func record(_ result: BenchResult) {
            results.append(result)
            FileHandle.standardError.write(Data("  \(result.name): \(human(result.value)) \(result.unit)\(result.ratio.map { String(format: ", %.2fx the baseline", $0) } ?? "")\n".utf8))
        }
        let started = ContinuousClock.now
        if selected("buffer") { record(try bufferBench(dir: work, readings: Int(200_000 * scale))) }
        if selected("wire") { record(try wireBench()) }
        if selected("ingest") { record(try await ingestBench(bin: bin, messages: Int(40_000 * scale))) }
        if selected("peer-collectd") { record(try await peerBench(bin: bin, messages: Int(40_000 * scale))) }
        if selected("sink-sqlite") || selected("sink-clickhouse") {
            let load = try SinkLoad(gateways: 100, batchesPerGateway: quick ? 1 : sinkBatches, batchSize: 500)
            if selected("sink-sqlite") { record(try await sqliteSinkBench(bin: bin, load: load)) }
            if selected("sink-clickhouse") { record(try await clickHouseSinkBench(bin: bin, load: load)) }
        }
        if selected("end-to-end") {
            for r in try await steadyBench(bin: bin, readingsPerSecond: 10_000, seconds: quick ? 5 : steadySeconds, idleSeconds: quick ? 5 : 20) { record(r) }
        }
        if selected("sustained") {
            record(try await sustainedBench(bin: bin, step: 10_000, stepSeconds: quick ? 5 : 15, maxSteps: quick ? 3 : 8, lagBoundSeconds: 3))
        }
        if selected("drain") { record(try await drainBench(bin: bin, readingsPerSecond: 2_000, seconds: quick ? 5 : 20)) }
        if selected("fleet") { record(try await fleetBench(bin: bin, gateways: quick ? 100 : 500, batches: quick ? 3 : 6)) }
        if selected("relay") {
            for r in try await relayBench(bin: bin, gateways: quick ? 50 : 100, batches: quick ? 4 : 20, outageSeconds: quick ? 15 : 60) { record(r) }
        }
        // Long, so never part of "all": only when asked for by name.
        if wanted?.contains("fleet-10k") == true {
            for r in try await fleetScaleBench(bin: bin, gateways: quick ? 2_000 : 10_000, seconds: quick ? 20 : 60, runs: runs, out: out,
                                                parts: Set((fleetParts ?? "1x,burst,clickhouse").split(separator: ",").map(String.init)),
                                                maxInFlightBatches: maxInFlightBatches, connections: fleetConnections) { record(r) }
        }

        print(table(results))
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let machine = machineDescription().sorted { $0.key < $1.key }.map { "\(JSONValue.quoted($0.key)):\(JSONValue.quoted($0.value))" }.joined(separator: ",")
        let json = """
            {"kind":"tributary-bench","version":1,"when":\(JSONValue.quoted(stamp)),"quick":\(quick),\
            "seconds":\(number((ContinuousClock.now - started).inSeconds)),"machine":{\(machine)},
            "results":[
            \(results.map(\.json).joined(separator: ",\n"))
            ]}

            """
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let path = "\(out)/\(stamp)\(quick ? "-quick" : "").json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        print("results: \(path)")
    }
}
