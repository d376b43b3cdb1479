import Foundation
import Logging
import Synchronization
import TributaryMQTT
import TributaryRuntime
import TributarySimulator
import TributaryTesting

/// 9. A peer: Debian's collectd (its MQTT plugin subscribing, its CSV plugin writing) against
/// the agent, each fed the same plain-number messages by the same publisher, one value per
/// message. The formats differ only where the two programs demand it: the agent reads
/// `sensors/GW/SENSOR/METRIC` with the payload `21.53`, collectd reads
/// `collectd/GW/SENSOR/gauge-METRIC` with `N:21.53`; both stamp the value with the time it
/// arrived ("N" is collectd's "now").
func peerBench(bin: String, messages: Int) async throws -> BenchResult {
    guard let collectd = ["/usr/sbin/collectd", "/usr/bin/collectd"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw BenchError("collectd is not installed (apt-get install collectd-core)")
    }
    let payloads = try plainNumbers(messages: messages)
    var agentRates: [Double] = []
    var collectdRates: [Double] = []
    var collectdLost = 0
    for _ in 0..<2 {
        // The agent, until its buffer has committed every value.
        var rig = try await Rig(bin: bin)
        let agent = try await rig.startAgent()
        agentRates.append(Double(messages) / (try await timed {
            try await publish(payloads, broker: rig.broker.url) { $0 }
            try await rig.waitForAgentCounter(.ingested, atLeast: Int64(messages))
        }))
        await rig.stop(agent)

        // collectd, until its CSV files hold every value, or stop growing for 3 s (collectd
        // drops values it takes for too old; they are counted as lost, not waited for).
        rig = try await Rig(bin: bin)
        let peer = try await startCollectd(collectd, rig: rig)
        let started = ContinuousClock.now
        try await publish(payloads, broker: rig.broker.url) { collectdForm($0) }
        var stored = 0
        var lastGrowth = ContinuousClock.now
        while stored < messages && ContinuousClock.now - lastGrowth < .seconds(3) {
            try await Task.sleep(for: .milliseconds(100))  // reading the files costs CPU too
            let now = csvValues(in: rig.dir.file("csv/gw-bench"))
            if now > stored { (stored, lastGrowth) = (now, ContinuousClock.now) }
        }
        collectdRates.append(Double(stored) / (lastGrowth - started).inSeconds)
        collectdLost += messages - stored
        await rig.stop(peer)
    }
    var result = BenchResult(name: "peer-collectd", what: "plain-number MQTT messages/s stored by the agent (its SQLite buffer)",
                             value: median(agentRates), unit: "msg/s",
                             baseline: "collectd 5.12 (mqtt plugin, QoS 1, csv plugin) on the same traffic", baselineValue: median(collectdRates))
    result.notes = [
        "messages": String(messages), "runs": "2 each, alternating; the mean",
        "collectd_values_lost": String(collectdLost), "agent_values_lost": "0 (it waits for all)",
        "differs": "collectd appends to CSV files (no transaction, no fsync, nothing to resend from); the agent commits to SQLite in WAL mode and keeps every value until an aggregator acknowledges it; collectd drops a value whose time is not after its series' last one",
    ]
    return result
}

/// `messages` plain-number messages from the simulator's `number` devices: (topic, payload).
private func plainNumbers(messages: Int) throws -> [(topic: String, payload: [UInt8])] {
    var options = SensorSimulator.Options(broker: try MQTTBroker(url: "mqtt://127.0.0.1:1"), gatewayID: "gw-bench", sensors: 50, rate: 1000)
    options.kinds = [.number]
    var traffic = TrafficGenerator(options: options, startMs: 1_795_000_000_000)
    return (0..<messages).compactMap { _ in traffic.next().map { ($0.topic, $0.payload) } }
}

/// `sensors/GW/SENSOR/METRIC` + `21.53` as collectd's MQTT plugin wants it:
/// `collectd/HOST/PLUGIN/TYPE-INSTANCE` + `TIME:VALUE`.
private func collectdForm(_ message: (topic: String, payload: [UInt8])) -> (topic: String, payload: [UInt8]) {
    let levels = message.topic.split(separator: "/")
    return ("collectd/\(levels[1])/\(levels[2])/gauge-\(levels[3])", Array("N:".utf8) + message.payload)
}

/// Publishes every message at QoS 1 with up to 1000 awaiting their PUBACK, and returns once
/// the broker acknowledged them all.
private func publish(_ messages: [(topic: String, payload: [UInt8])], broker: String,
                     as form: ((topic: String, payload: [UInt8])) -> (topic: String, payload: [UInt8])) async throws {
    let acknowledged = Atomic<Int>(0)
    let connected = Atomic<Bool>(false)
    var handlers = MQTTClient.Handlers()
    handlers.onPublishAcknowledged = { _ in acknowledged.add(1, ordering: .relaxed) }
    handlers.onConnect = { _ in connected.store(true, ordering: .releasing) }
    var logger = Logger(label: "bench-publisher")
    logger.logLevel = .warning
    let client = try MQTTClient(broker: try MQTTBroker(url: broker), options: .init(clientID: "bench-publisher", cleanSession: true),
                                handlers: handlers, logger: logger)
    try client.start()
    defer { client.stop() }
    while !connected.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(5)) }
    for (sent, message) in messages.enumerated() {
        while sent - acknowledged.load(ordering: .relaxed) > 1000 { try await Task.sleep(for: .milliseconds(1)) }
        let (topic, payload) = form(message)
        _ = try client.publish(topic: topic, payload: payload, qos: 1)
    }
    let deadline = ContinuousClock.now + .seconds(60)
    while acknowledged.load(ordering: .relaxed) < messages.count {
        guard ContinuousClock.now < deadline else { throw BenchError("the broker did not acknowledge every publish in 60 s") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// collectd in the foreground with only the plugins the comparison needs, subscribed before
/// this returns (a probe value has reached its CSV files).
private func startCollectd(_ executable: String, rig: Rig) async throws -> ChildProcess {
    let config = rig.dir.file("collectd.conf")
    try """
        Hostname "bench"
        FQDNLookup false
        BaseDir "\(rig.dir.file("collectd"))"
        PIDFile "\(rig.dir.file("collectd/collectd.pid"))"
        PluginDir "/usr/lib/collectd"
        TypesDB "/usr/share/collectd/types.db"
        Interval 10
        LoadPlugin logfile
        <Plugin logfile>
          LogLevel "info"
          File "\(rig.dir.file("collectd.log"))"
        </Plugin>
        LoadPlugin csv
        <Plugin csv>
          DataDir "\(rig.dir.file("csv"))"
          StoreRates false
        </Plugin>
        LoadPlugin mqtt
        <Plugin mqtt>
          <Subscribe "bench">
            Host "127.0.0.1"
            Port "\(rig.broker.port)"
            ClientId "collectd-bench"
            QoS 1
            Topic "collectd/#"
          </Subscribe>
        </Plugin>

        """.write(toFile: config, atomically: true, encoding: .utf8)
    try FileManager.default.createDirectory(atPath: rig.dir.file("collectd"), withIntermediateDirectories: true)
    let process = try ChildProcess(executable: executable, arguments: ["-f", "-C", config], logFile: rig.dir.file("collectd.out"))
    let deadline = ContinuousClock.now + .seconds(30)
    while csvValues(in: rig.dir.file("csv/probe")) == 0 {
        guard ContinuousClock.now < deadline else {
            _ = await process.stop()
            throw BenchError("collectd did not store a probe value within 30 s; see \(rig.dir.file("collectd.log"))")
        }
        try await publish([("sensors/probe/probe/value", Array("1".utf8))], broker: rig.broker.url) { collectdForm($0) }
        try await Task.sleep(for: .milliseconds(200))
    }
    return process
}

/// Values in collectd's CSV files under `directory` (each file starts with a header line).
private func csvValues(in directory: String) -> Int {
    guard let files = FileManager.default.enumerator(atPath: directory) else { return 0 }
    var count = 0
    for case let file as String in files {
        guard let data = FileManager.default.contents(atPath: directory + "/" + file), !data.isEmpty else { continue }
        var lines = 0
        for byte in data where byte == UInt8(ascii: "\n") { lines += 1 }
        count += lines - 1
    }
    return count
}
