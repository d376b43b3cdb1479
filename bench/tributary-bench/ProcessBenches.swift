import Foundation
import Logging
import TributaryBuffer
import TributaryCore
import TributaryMQTT
import TributaryRuntime
import TributarySimulator
import TributaryTesting

/// The real parts as separate processes, from the same release build as this program: a
/// mosquitto broker, an aggregator with its SQLite sink, an agent, on loopback ports.
struct Rig {
    let dir: TemporaryDirectory
    let broker: MosquittoBroker
    let httpPort: Int
    let bin: String
    let logger: Logger

    init(bin: String) async throws {
        self.bin = bin
        dir = try TemporaryDirectory(prefix: "tributary-bench")
        try FileManager.default.createDirectory(atPath: dir.file("broker"), withIntermediateDirectories: true)
        broker = try await MosquittoBroker(directory: dir.file("broker"))
        httpPort = try FreePort.allocate()
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        self.logger = logger
        try """
            gateway_id: gw-bench
            data_dir: \(dir.file("agent"))
            mqtt:
              broker: \(broker.url)
              subscriptions:
            \(SensorSimulator.subscriptionYAML())
            aggregator:
              url: http://127.0.0.1:\(httpPort)
            """.write(toFile: dir.file("agent.yaml"), atomically: true, encoding: .utf8)
    }

    var bufferPath: String { dir.file("agent/buffer.sqlite") }
    var sink: String { "sqlite:" + dir.file("aggregator/sink.sqlite") }

    func startAggregator() async throws -> ChildProcess {
        let process = try ChildProcess(executable: bin + "/tributary-aggregator",
                                       arguments: ["--listen", "127.0.0.1:\(httpPort)", "--data-dir", dir.file("aggregator"), "--log-level", "warning"],
                                       logFile: dir.file("aggregator.log"))
        try await FreePort.waitUntilListening(httpPort)
        return process
    }

    func startAgent() async throws -> ChildProcess {
        let agent = try ChildProcess(executable: bin + "/tributary-agent", arguments: ["--config", dir.file("agent.yaml")],
                                     logFile: dir.file("agent.log"))
        let deadline = ContinuousClock.now + .seconds(30)
        while !((try? String(contentsOfFile: dir.file("agent.log"), encoding: .utf8))?.contains("subscriptions confirmed") ?? false) {
            guard ContinuousClock.now < deadline else { throw BenchError("the agent did not subscribe within 30 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return agent
    }

    /// The agent's running totals, from its buffer file (read-only, beside the running agent).
    func agentCounter(_ total: BufferReader.Total) -> Int64 {
        (try? BufferReader(path: bufferPath).total(total)) ?? 0
    }

    func waitForAgentCounter(_ name: BufferReader.Total, atLeast target: Int64, timeout: Duration = .seconds(300)) async throws {
        let deadline = ContinuousClock.now + timeout
        while agentCounter(name) < target {
            guard ContinuousClock.now < deadline else { throw BenchError("agent \(name) stuck at \(agentCounter(name)) of \(target)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func publisher(messages: Int, rate: Double) throws -> SensorSimulator {
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: broker.url), gatewayID: "gw-bench", sensors: 50, rate: rate, count: messages)
        options.kinds = [.plug]
        return SensorSimulator(options: options, logger: logger)
    }

    func stop(_ processes: ChildProcess...) async {
        for process in processes { _ = await process.stop(signal: SIGTERM) }
        await broker.stop()
        dir.remove()
    }
}

/// Resident memory (kB: all, and the part that is the process's own rather than mapped files
/// such as the Swift runtime, Foundation and ICU) and CPU seconds of a process, from /proc.
func processUsage(_ pid: pid_t) -> (rssKB: Int, anonKB: Int, cpuSeconds: Double)? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
    func kB(_ field: String) -> Int {
        status.split(separator: "\n").first { $0.hasPrefix(field) }?.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    }
    let rss = kB("VmRSS:"), anon = kB("RssAnon:")
    // Fields after the command name (which may hold spaces, so split after its closing paren).
    let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    let cpu = ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / ticks  // utime, stime
    return (rss, anon, cpu)
}

/// 1. Messages/s the agent durably buffers against what a bare `mosquitto_sub -q 1` drains,
/// each fed by the same publisher (the simulator, as fast as the broker takes it).
func ingestBench(bin: String, messages: Int) async throws -> BenchResult {
    var subRates: [Double] = []
    var agentRates: [Double] = []
    for _ in 0..<2 {
        // mosquitto_sub: exits after the last message.
        var rig = try await Rig(bin: bin)
        let sub = try ChildProcess(executable: "/usr/bin/mosquitto_sub",
                                   arguments: ["-h", "127.0.0.1", "-p", String(rig.broker.port), "-q", "1", "-t", "sensors/#", "-C", String(messages), "-i", "bench-sub"],
                                   logFile: rig.dir.file("sub.out"))
        try await Task.sleep(for: .milliseconds(500))  // subscribed (mosquitto_sub says nothing when it is)
        let publisher = try rig.publisher(messages: messages, rate: 1e9)
        subRates.append(Double(messages) / (try await timed {
            async let published = publisher.run()
            _ = await sub.wait()
            _ = try await published
        }))
        await rig.stop()

        // The agent: until its buffer has committed every reading (no aggregator: it keeps them).
        rig = try await Rig(bin: bin)
        let agent = try await rig.startAgent()
        let agentPublisher = try rig.publisher(messages: messages, rate: 1e9)
        agentRates.append(Double(messages) / (try await timed {
            async let published = agentPublisher.run()
            try await rig.waitForAgentCounter(.ingested, atLeast: Int64(messages * 5))
            _ = try await published
        }))
        await rig.stop(agent)
    }
    var result = BenchResult(name: "ingest", what: "MQTT messages/s durably buffered by the agent (QoS 1, 5 readings each)", value: median(agentRates),
                             unit: "msg/s", baseline: "mosquitto_sub -q 1 draining the same publisher", baselineValue: median(subRates), goal: ">= 0.9x")
    result.met = (result.ratio ?? 0) >= 0.9
    result.notes = ["messages": String(messages), "runs": "2 each, alternating; the mean of the two",
                    "publisher": "tributary-sim sensors in this process, 1000 publishes in flight"]
    return result
}

/// 4 and 6. End to end at a fixed rate (simulator -> broker -> agent -> aggregator -> SQLite
/// sink), with verify; the agent's resident memory and CPU sampled meanwhile.
func steadyBench(bin: String, readingsPerSecond: Double, seconds: Int) async throws -> [BenchResult] {
    let rig = try await Rig(bin: bin)
    let aggregator = try await rig.startAggregator()
    let agent = try await rig.startAgent()
    let messages = Int(readingsPerSecond / 5) * seconds
    let publisher = try rig.publisher(messages: messages, rate: readingsPerSecond / 5)
    let idle = processUsage(agent.pid)
    let sampling = Task { () -> (Int, Int, Double, Double) in
        var peak = 0, peakAnon = 0
        let start = processUsage(agent.pid)?.cpuSeconds ?? 0
        let began = ContinuousClock.now
        while !Task.isCancelled {
            if let usage = processUsage(agent.pid) {
                peak = max(peak, usage.rssKB)
                peakAnon = max(peakAnon, usage.anonKB)
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        let cpu = (processUsage(agent.pid)?.cpuSeconds ?? start) - start
        return (peak, peakAnon, cpu, (ContinuousClock.now - began).inSeconds)
    }
    let began = ContinuousClock.now
    let manifest = try await publisher.run()
    try await rig.waitForAgentCounter(.acknowledged, atLeast: Int64(manifest.entries.count))
    let endToEnd = (ContinuousClock.now - began).inSeconds
    sampling.cancel()
    let (peakKB, peakAnonKB, cpuSeconds, wall) = await sampling.value
    let report = try await Verifier.verify(manifest, sink: rig.sink)
    await rig.stop(agent, aggregator)

    var e2e = BenchResult(name: "end-to-end", what: "readings/s from publish to acknowledged by the sink, verify exact",
                          value: Double(manifest.entries.count) / endToEnd, unit: "readings/s",
                          baseline: "offered rate", baselineValue: readingsPerSecond)
    e2e.notes = ["verify": report.description.split(separator: "\n").first.map(String.init) ?? "", "seconds": String(format: "%.1f", endToEnd)]
    e2e.met = report.passed
    e2e.goal = "conservation"
    var memory = BenchResult(name: "agent-memory", what: "agent peak RSS at \(human(readingsPerSecond)) readings/s", value: Double(peakKB) / 1024,
                             unit: "MB", goal: "<= 30 MB")
    memory.met = Double(peakKB) / 1024 <= 30
    memory.notes = [
        "cpu_share_of_one_core": String(format: "%.2f", cpuSeconds / max(wall, 0.001)),
        "peak_rss_anon_mb": String(format: "%.1f", Double(peakAnonKB) / 1024),
        "idle_rss_mb": String(format: "%.1f", Double(idle?.rssKB ?? 0) / 1024),
        "idle_rss_anon_mb": String(format: "%.1f", Double(idle?.anonKB ?? 0) / 1024),
    ]
    return [e2e, memory]
}

/// 7. Backlog drain: the aggregator is down while the sensors publish at the live rate; then
/// it comes back, and the agent's backlog drains. Drain rate against the live rate, timed from
/// the first acknowledgement (before it, the agent is still waiting out its retry backoff,
/// reported apart as the reconnect delay).
func drainBench(bin: String, readingsPerSecond: Double, seconds: Int) async throws -> BenchResult {
    let rig = try await Rig(bin: bin)
    let agent = try await rig.startAgent()
    let messages = Int(readingsPerSecond / 5) * seconds
    let manifest = try await rig.publisher(messages: messages, rate: readingsPerSecond / 5).run()
    try await rig.waitForAgentCounter(.ingested, atLeast: Int64(manifest.entries.count))
    let aggregator = try await rig.startAggregator()
    let reconnect = try await timed { try await rig.waitForAgentCounter(.acknowledged, atLeast: 1, timeout: .seconds(120)) }
    let firstAcknowledged = rig.agentCounter(.acknowledged)
    let drain = try await timed {
        try await rig.waitForAgentCounter(.acknowledged, atLeast: Int64(manifest.entries.count), timeout: .seconds(600))
    }
    let drained = Double(Int64(manifest.entries.count) - firstAcknowledged)
    let report = try await Verifier.verify(manifest, sink: rig.sink)
    await rig.stop(agent, aggregator)
    var result = BenchResult(name: "drain", what: "backlog of \(manifest.entries.count) readings drained after an outage",
                             value: drained / max(drain, 0.001), unit: "readings/s", baseline: "live rate", baselineValue: readingsPerSecond,
                             goal: ">= 10x")
    result.met = (result.ratio ?? 0) >= 10 && report.passed
    result.notes = ["verify": report.passed ? "exact" : report.description, "reconnect_seconds": String(format: "%.1f", reconnect),
                    "acknowledged_in_first_answer": String(firstAcknowledged)]
    return result
}

/// 8. The aggregator under a fleet: `tributary-sim fleet` against it, SQLite sink.
func fleetBench(bin: String, gateways: Int, batches: Int) async throws -> BenchResult {
    let rig = try await Rig(bin: bin)
    let aggregator = try await rig.startAggregator()
    let manifestPath = rig.dir.file("fleet.jsonl")
    let output = rig.dir.file("fleet.out")
    let fleet = try ChildProcess(executable: bin + "/tributary-sim", arguments: [
        "fleet", "--aggregator", "http://127.0.0.1:\(rig.httpPort)", "--gateways", String(gateways), "--batches", String(batches),
        "--batch-size", "100", "--rate", "200", "--manifest", manifestPath, "--json",
    ], logFile: output)
    _ = await fleet.wait()
    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("{") }),
          case .object(let fields)? = try? JSONValue.parse(Array(line.utf8)) else {
        await rig.stop(aggregator)
        throw BenchError("fleet printed no report: \(text.suffix(300))")
    }
    func value(_ name: String) -> Double {
        switch fields.first(where: { $0.0 == name })?.1 {
        case .integer(let i)?: Double(i)
        case .double(let d)?: d
        default: 0
        }
    }
    let report = try await Verifier.verify(try Manifest.read(from: manifestPath), sink: rig.sink)
    await rig.stop(aggregator)
    var result = BenchResult(name: "fleet", what: "\(gateways) gateways x \(batches) batches of 100 against one aggregator",
                             value: value("readings_per_second"), unit: "readings/s")
    result.notes = [
        "gateways_served": String(Int(value("gateways_served"))), "ack_ms_p50": String(format: "%.1f", value("ack_ms_p50")),
        "ack_ms_p99": String(format: "%.1f", value("ack_ms_p99")), "busy_429": String(Int(value("busy_429"))),
        "verify": report.passed ? "exact" : report.description,
    ]
    return result
}
