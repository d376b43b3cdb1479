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
    let rss = statusKB(status, "VmRSS:"), anon = statusKB(status, "RssAnon:")
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
        subRates.append(try await mosquittoSubDrainRate(bin: bin, messages: messages))

        // The agent: until its buffer has committed every reading (no aggregator: it keeps them).
        let rig = try await Rig(bin: bin)
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

/// Messages/s a bare `mosquitto_sub -q 1` drains from the simulator publishing `messages` as
/// fast as the broker takes them, on a broker of its own (it exits after the last message).
func mosquittoSubDrainRate(bin: String, messages: Int) async throws -> Double {
    let rig = try await Rig(bin: bin)
    let sub = try ChildProcess(executable: "/usr/bin/mosquitto_sub",
                               arguments: ["-h", "127.0.0.1", "-p", String(rig.broker.port), "-q", "1", "-t", "sensors/#", "-C", String(messages), "-i", "bench-sub"],
                               logFile: rig.dir.file("sub.out"))
    try await Task.sleep(for: .milliseconds(500))  // subscribed (mosquitto_sub says nothing when it is)
    let publisher = try rig.publisher(messages: messages, rate: 1e9)
    let seconds = try await timed {
        async let published = publisher.run()
        _ = await sub.wait()
        _ = try await published
    }
    await rig.stop()
    return Double(messages) / seconds
}

/// 4 and 6. End to end at a fixed rate (simulator -> broker -> agent -> aggregator -> SQLite
/// sink), with verify; and the agent's cost (issue 27): its CPU per reading delivered (utime +
/// stime from /proc/PID/stat, from the first publish until the sink acknowledged the last
/// reading, so sealing, compressing, uploading and acknowledging are in it), against a bare
/// `mosquitto_sub -q 1` subscribed to the same stream at the same time; its CPU and RSS while
/// connected with no traffic for `idleSeconds` before; its peak RSS (VmHWM).
func steadyBench(bin: String, readingsPerSecond: Double, seconds: Int, idleSeconds: Int) async throws -> [BenchResult] {
    let rig = try await Rig(bin: bin)
    let aggregator = try await rig.startAggregator()
    let agent = try await rig.startAgent()
    let subOutput = rig.dir.file("sub.out")
    let sub = try ChildProcess(executable: "/usr/bin/mosquitto_sub",
                               arguments: ["-h", "127.0.0.1", "-p", String(rig.broker.port), "-q", "1", "-t", "sensors/#", "-i", "bench-sub-e2e"],
                               logFile: subOutput)
    try await Task.sleep(for: .seconds(2))  // both settled: subscribed, start-up work done
    let idleStart = (agent: processUsage(agent.pid), sub: processUsage(sub.pid))
    let idleWall = try await timed { try await Task.sleep(for: .seconds(idleSeconds)) }
    let idleEnd = (agent: processUsage(agent.pid), sub: processUsage(sub.pid))
    func share(_ start: (rssKB: Int, anonKB: Int, cpuSeconds: Double)?, _ end: (rssKB: Int, anonKB: Int, cpuSeconds: Double)?) -> Double {
        ((end?.cpuSeconds ?? 0) - (start?.cpuSeconds ?? 0)) / idleWall
    }

    let messages = Int(readingsPerSecond / 5) * seconds
    let publisher = try rig.publisher(messages: messages, rate: readingsPerSecond / 5)
    let sampling = Task { () -> (Int, Int) in
        var peak = 0, peakAnon = 0
        while !Task.isCancelled {
            if let usage = processUsage(agent.pid) {
                peak = max(peak, usage.rssKB)
                peakAnon = max(peakAnon, usage.anonKB)
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return (peak, peakAnon)
    }
    let start = (agent: processUsage(agent.pid)?.cpuSeconds ?? 0, sub: processUsage(sub.pid)?.cpuSeconds ?? 0)
    let began = ContinuousClock.now
    let manifest = try await publisher.run()
    try await rig.waitForAgentCounter(.acknowledged, atLeast: Int64(manifest.entries.count))
    let endToEnd = (ContinuousClock.now - began).inSeconds
    let agentCPU = (processUsage(agent.pid)?.cpuSeconds ?? 0) - start.agent
    // mosquitto_sub prints a line a message; it is done once it printed them all.
    try await eventually(timeout: .seconds(30), "mosquitto_sub printed fewer than \(manifest.messagesPublished) lines") {
        lineCount(subOutput) >= manifest.messagesPublished
    }
    let subCPU = (processUsage(sub.pid)?.cpuSeconds ?? 0) - start.sub
    let peakHWM = processStatusKB(agent.pid, "VmHWM:")
    sampling.cancel()
    let (peakKB, peakAnonKB) = await sampling.value
    let report = try await Verifier.verify(manifest, sink: rig.sink)
    _ = await sub.stop()
    await rig.stop(agent, aggregator)

    let readings = Double(manifest.entries.count)
    var e2e = BenchResult(name: "end-to-end", what: "readings/s from publish to acknowledged by the sink, verify exact",
                          value: readings / endToEnd, unit: "readings/s",
                          baseline: "offered rate", baselineValue: readingsPerSecond)
    e2e.notes = ["verify": report.description.split(separator: "\n").first.map(String.init) ?? "", "seconds": String(format: "%.1f", endToEnd)]
    e2e.met = report.passed
    e2e.goal = "conservation"
    var cpu = BenchResult(name: "agent-cpu", what: "agent us of CPU per reading delivered at \(human(readingsPerSecond)) readings/s offered (JSON, 5 a message, QoS 1), end to end",
                          value: agentCPU * 1e6 / readings, unit: "us/reading",
                          baseline: "mosquitto_sub -q 1 on the same stream, same time", baselineValue: subCPU * 1e6 / readings, goal: "<= 5 us")
    cpu.met = cpu.value <= 5 && report.passed
    cpu.notes = [
        "agent_cpu_seconds": String(format: "%.2f", agentCPU), "sub_cpu_seconds": String(format: "%.2f", subCPU),
        "agent_us_per_message": String(format: "%.1f", agentCPU * 1e6 / Double(manifest.messagesPublished)),
        "agent_share_of_one_core": String(format: "%.3f", agentCPU / endToEnd), "readings": String(manifest.entries.count),
        "ratio_means": "agent CPU / mosquitto_sub CPU (lower is better)",
    ]
    var idle = BenchResult(name: "agent-idle-cpu", what: "agent CPU, connected with no traffic for \(idleSeconds) s, in % of one core",
                           value: share(idleStart.agent, idleEnd.agent) * 100, unit: "% of a core",
                           baseline: "mosquitto_sub -q 1, same broker, same time", baselineValue: share(idleStart.sub, idleEnd.sub) * 100, goal: "< 0.5%")
    idle.met = idle.value < 0.5
    idle.notes = ["ratio_means": "agent / mosquitto_sub; the baseline is often 0 (then no ratio)"]
    var idleRSS = BenchResult(name: "agent-idle-rss", what: "agent RSS, connected with no traffic", value: Double(idleEnd.agent?.rssKB ?? 0) / 1024,
                              unit: "MB", baseline: "mosquitto_sub -q 1 RSS", baselineValue: Double(idleEnd.sub?.rssKB ?? 0) / 1024, goal: "<= 20 MB")
    idleRSS.met = idleRSS.value <= 20
    idleRSS.notes = ["idle_rss_anon_mb": String(format: "%.1f", Double(idleEnd.agent?.anonKB ?? 0) / 1024),
                     "ratio_means": "agent / mosquitto_sub"]
    var memory = BenchResult(name: "agent-memory", what: "agent peak RSS (VmHWM) at \(human(readingsPerSecond)) readings/s", value: Double(peakHWM) / 1024,
                             unit: "MB", goal: "<= 30 MB")
    memory.met = memory.value <= 30
    memory.notes = [
        "cpu_share_of_one_core": String(format: "%.2f", agentCPU / endToEnd),
        "peak_rss_sampled_mb": String(format: "%.1f", Double(peakKB) / 1024),
        "peak_rss_anon_mb": String(format: "%.1f", Double(peakAnonKB) / 1024),
        "idle_rss_mb": String(format: "%.1f", Double(idleEnd.agent?.rssKB ?? 0) / 1024),
        "idle_rss_anon_mb": String(format: "%.1f", Double(idleEnd.agent?.anonKB ?? 0) / 1024),
    ]
    return [e2e, cpu, idle, idleRSS, memory]
}

/// One `/proc/PID/status` field in kB (VmHWM:, VmRSS:), 0 when absent.
func processStatusKB(_ pid: pid_t, _ field: String) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    return statusKB(status, field)
}

private func statusKB(_ status: String, _ field: String) -> Int {
    status.split(separator: "\n").first { $0.hasPrefix(field) }?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? 0
}

/// Lines in a file (0 when unreadable).
func lineCount(_ path: String) -> Int {
    guard let data = FileManager.default.contents(atPath: path) else { return 0 }
    return data.reduce(0) { $1 == 10 ? $0 + 1 : $0 }
}

/// Polls `condition` every 100 ms until it holds, or throws `message` after `timeout`.
func eventually(timeout: Duration, _ message: String, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw BenchError(message) }
        try await Task.sleep(for: .milliseconds(100))
    }
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
