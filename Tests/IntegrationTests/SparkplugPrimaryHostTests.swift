import Foundation
import Logging
import Synchronization
import Testing
import TributaryAgent
import TributaryCore
import TributaryMQTT
import TributaryRuntime
import TributarySQLite
import TributarySimulator
import TributarySparkplug
import TributaryTesting

/// Sparkplug B as plants run it (issue 20): the agent as a Sparkplug 3.0 primary host
/// application (`sparkplug.host_id`), edge nodes that wait for it, and historical metrics.
@Suite("Sparkplug primary host", .serialized)
struct SparkplugPrimaryHostTests {
    static let hostID = "tributary-scada"
    static let stateTopic = SparkplugHostState.topic(hostID: hostID)

    /// A value the MQTT threads and the test share.
    final class Shared<Value: Sendable>: Sendable {
        let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
    }

    /// Everything the broker delivers on `spBv1.0/#`, in its order.
    final class Observer: Sendable {
        let client: MQTTClient
        private let messages: Shared<[MQTTMessage]>
        private let subscribed: Shared<Bool>

        init(broker: String, logger: Logger) throws {
            var handlers = MQTTClient.Handlers()
            let messages = Shared<[MQTTMessage]>([]), subscribed = Shared(false)
            handlers.onMessage = { message in messages.value.withLock { $0.append(message) } }
            handlers.onSubscribed = { subscribed.value.withLock { $0 = true } }
            self.messages = messages
            self.subscribed = subscribed
            client = try MQTTClient(broker: try MQTTBroker(url: broker), options: .init(clientID: "spb-observer", cleanSession: true),
                                    handlers: handlers, logger: logger)
            client.addSubscription("spBv1.0/#", qos: 1)
            try client.start()
        }

        func waitSubscribed() async throws {
            try await eventually(timeout: .seconds(20), "the observer subscribes") { subscribed.value.withLock { $0 } }
        }

        var seen: [MQTTMessage] { messages.value.withLock { $0 } }

        /// The STATE messages of the host seen so far.
        var states: [SparkplugHostState] {
            seen.filter { $0.topic == SparkplugPrimaryHostTests.stateTopic }.compactMap { SparkplugHostState(payload: $0.payload) }
        }

        func count(_ type: SparkplugTopic.MessageType) -> Int {
            seen.filter { SparkplugTopic($0.topic)?.type == type }.count
        }
    }

    /// The STATE the broker retains for the host, as a newly subscribing edge node gets it.
    static func retainedState(_ broker: String, logger: Logger) async throws -> SparkplugHostState {
        let received = Shared<SparkplugHostState?>(nil)
        var handlers = MQTTClient.Handlers()
        handlers.onMessage = { message in
            if message.topic == stateTopic, message.retain { received.value.withLock { $0 = SparkplugHostState(payload: message.payload) } }
        }
        let client = try MQTTClient(broker: try MQTTBroker(url: broker),
                                    options: .init(clientID: "spb-state-reader-\(UInt32.random(in: 0...UInt32.max))", cleanSession: true),
                                    handlers: handlers, logger: logger)
        client.addSubscription(stateTopic, qos: 1)
        try client.start()
        defer { client.stop() }
        try await eventually(timeout: .seconds(20), "the broker sends the retained STATE") { received.value.withLock { $0 } != nil }
        return received.value.withLock { $0! }
    }

    /// Tracks the simulator's progress reports: whether it waits for the host now.
    final class Waiting: Sendable {
        private let state = Mutex((now: false, reports: 0))
        func report(_ p: SensorSimulator.Progress) {
            state.withLock { s in
                s.now = p.waitingForPrimaryHost
                if p.waitingForPrimaryHost { s.reports += 1 }
            }
        }
        var now: Bool { state.withLock { $0.now } }
        var reports: Int { state.withLock { $0.reports } }
    }

    /// The edge node waits for the agent's STATE online before its births, ends its session
    /// when a clean stop says offline and births again when the agent is back: every reading
    /// arrives once. A clean stop leaves the retained STATE offline with the session's
    /// timestamp; a kill -9 leaves the will, saying the same; the next run answers that stale
    /// will with online again.
    @Test("an edge node births only after the agent's STATE online; clean stop and kill -9 leave STATE offline; every reading once")
    func edgeNodesWaitForThePrimaryHost() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-phost")
        defer { harness.dir.remove() }
        let yamlPath = harness.dir.file("agent.yaml")
        try (try String(contentsOfFile: yamlPath, encoding: .utf8) + "\nsparkplug:\n  host_id: \(Self.hostID)\n")
            .write(toFile: yamlPath, atomically: true, encoding: .utf8)
        let aggregator = try await harness.startAggregator()
        let observer = try Observer(broker: harness.broker.url, logger: harness.logger)
        defer { observer.client.stop() }
        try await observer.waitSubscribed()

        // The edge node starts first, and waits: no host has said online.
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: harness.broker.url), gatewayID: harness.gatewayID,
                                              sensors: 6, rate: 150, count: 1500)
        options.kinds = [.sparkplug]
        options.primaryHostID = Self.hostID
        let waiting = Waiting()
        let publishing = Task { [options, logger = harness.logger] in
            try await SensorSimulator(options: options, logger: logger).run { waiting.report($0) }
        }
        try await eventually(timeout: .seconds(30), "the edge node waits for its primary host") { waiting.now }
        #expect(observer.count(.nbirth) == 0 && observer.count(.ddata) == 0, "nothing published before the host is online")

        var agent = try await harness.startAgent()
        try await eventually("the first readings reach the sink") { try await harness.gateway()?.readingsSynced ?? 0 > 0 }
        let firstOnline = try #require(observer.states.first)
        #expect(firstOnline.online)

        // A clean stop: the agent says offline itself (its DISCONNECT drops the will), with the
        // session's timestamp; the edge node sends its deaths and waits.
        let reportsBefore = waiting.reports
        await agent.stop(signal: SIGTERM)
        let afterStop = try await Self.retainedState(harness.broker.url, logger: harness.logger)
        #expect(afterStop == SparkplugHostState(online: false, timestamp: firstOnline.timestamp), "\(afterStop)")
        try await eventually(timeout: .seconds(30), "the edge node waits again") { waiting.now && waiting.reports > reportsBefore }
        try await eventually(timeout: .seconds(20), "the edge node ends its session when the host goes offline") { observer.count(.ndeath) == 1 }

        // Back: the node births again, and every reading of the run arrives once.
        agent = try await harness.startAgent()
        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest)
        let withQuarantine = try await Verifier.verify(manifest, sink: harness.sink, agentBuffers: [harness.dir.file("agent/buffer.sqlite")])
        #expect(report.passed && withQuarantine.passed && withQuarantine.quarantineFound == 0, "\(withQuarantine)")

        // Every NBIRTH came while the host's last STATE said online, never before the first one.
        var hostOnline = false
        var births = 0
        for message in observer.seen {
            if message.topic == Self.stateTopic, let state = SparkplugHostState(payload: message.payload) { hostOnline = state.online }
            if SparkplugTopic(message.topic)?.type == .nbirth {
                #expect(hostOnline, "an NBIRTH while the primary host was not online")
                births += 1
            }
        }
        #expect(births >= 2, "a birth at the start and one after the host came back")
        #expect(observer.count(.ndeath) == 2, "a death when the host went offline, and one at the end of the run")
        let states = observer.states
        #expect(states.filter(\.online).map(\.timestamp) == states.filter(\.online).map(\.timestamp).sorted(),
                "each session's timestamp is at least the previous one's")

        // kill -9: no DISCONNECT, so the broker publishes the will, with the session's timestamp.
        let online = try await Self.retainedState(harness.broker.url, logger: harness.logger)
        #expect(online.online && online.timestamp >= firstOnline.timestamp, "\(online)")
        await agent.stop(signal: SIGKILL)
        try await eventually(timeout: .seconds(30), "the broker publishes the agent's will") {
            try await Self.retainedState(harness.broker.url, logger: harness.logger) == SparkplugHostState(online: false, timestamp: online.timestamp)
        }

        // The next run connects with a newer timestamp; the will, kept for its persistent session
        // (subscribed to its own STATE), reaches it as a stale offline, answered with online.
        func answered() -> Int { harness.agentLog.components(separatedBy: "offline STATE from an earlier session").count }
        let answeredBefore = answered()
        agent = try await harness.startAgent()
        try await eventually(timeout: .seconds(30), "the agent answers its old will") { answered() > answeredBefore }
        try await eventually(timeout: .seconds(30), "the retained STATE says online again") {
            let state = try await Self.retainedState(harness.broker.url, logger: harness.logger)
            return state.online && state.timestamp >= online.timestamp
        }
        await harness.stop(agent, aggregator)
    }

    /// Publishes `state` retained on the host's STATE topic, as another host (or a will) would.
    static func publishState(_ state: SparkplugHostState, _ harness: ProcessHarness, retained: Bool = true) async throws {
        try await harness.publishOne(topic: stateTopic, payload: String(decoding: state.payload, as: UTF8.self), retained: retained)
    }

    /// An offline STATE newer than the agent's session (a second host with the same id that
    /// stopped, a clock ahead) made spec-following edge nodes ignore the agent's online STATE and
    /// wait for good. The agent now connects again with a later timestamp, live and at start
    /// (its own STATE is subscribed again on each connect, so the retained one is seen).
    @Test("an offline STATE newer than the agent's session, live or found at start: the agent outdates it, edge nodes resume, every reading once")
    func aNewerOfflineStateIsOutdated() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-phost-newer")
        defer { harness.dir.remove() }
        let yamlPath = harness.dir.file("agent.yaml")
        try (try String(contentsOfFile: yamlPath, encoding: .utf8) + "\nsparkplug:\n  host_id: \(Self.hostID)\n")
            .write(toFile: yamlPath, atomically: true, encoding: .utf8)
        let aggregator = try await harness.startAggregator()
        var agent = try await harness.startAgent()
        // Read only once it is retained: a reader subscribed before gets it live, not retained.
        try await eventually(timeout: .seconds(30), "the agent says online") { harness.agentLog.contains("STATE online published") }
        let first = try await Self.retainedState(harness.broker.url, logger: harness.logger)
        #expect(first.online)

        var options = SensorSimulator.Options(broker: try MQTTBroker(url: harness.broker.url), gatewayID: harness.gatewayID,
                                              sensors: 4, rate: 150, count: 1800)
        options.kinds = [.sparkplug]
        options.primaryHostID = Self.hostID
        let waiting = Waiting()
        let publishing = Task { [options, logger = harness.logger] in
            try await SensorSimulator(options: options, logger: logger).run { waiting.report($0) }
        }
        try await eventually("the first readings reach the sink") { try await harness.gateway()?.readingsSynced ?? 0 > 0 }

        // Live: another host's offline, a minute newer than this session.
        func outdated() -> Int { harness.agentLog.components(separatedBy: "not older than this session's").count }
        let live = SparkplugHostState(online: false, timestamp: first.timestamp + 60_000)
        try await Self.publishState(live, harness)
        try await eventually(timeout: .seconds(30), "the agent says online with a later timestamp") {
            let state = try await Self.retainedState(harness.broker.url, logger: harness.logger)
            return state.online && state.timestamp > live.timestamp
        }
        #expect(outdated() == 2, "\(ProcessHarness.tail(harness.dir.file("agent.log")))")

        // At start: the agent stopped, an offline ten minutes ahead retained meanwhile.
        await agent.stop(signal: SIGTERM)
        let atStart = SparkplugHostState(online: false, timestamp: WallClock.nowMs() + 600_000)
        try await Self.publishState(atStart, harness)
        agent = try await harness.startAgent()
        try await eventually(timeout: .seconds(30), "the agent outdates the offline it finds at start") {
            let state = try await Self.retainedState(harness.broker.url, logger: harness.logger)
            return state.online && state.timestamp > atStart.timestamp
        }
        #expect(outdated() == 3)

        // The edge node took each online STATE and finished its run: every reading once.
        let manifest = try await publishing.value
        let report = try await harness.verifyWhenComplete(manifest)
        #expect(report.passed && report.found == manifest.entries.count && report.duplicates == 0, "\(report)")

        // Timestamps past the year 10000 are not followed: said, and answered with online, with
        // no renewal (Int64.max overflowed and crashed the agent on every start, attack round
        // 16; Int64.max - 1 was followed to a session at Int64.max, whose own will no online
        // could outdate, round 17).
        for (n, timestamp) in [Int64.max - 1, .max].enumerated() {
            try await Self.publishState(SparkplugHostState(online: false, timestamp: timestamp), harness)
            try await eventually(timeout: .seconds(30), "the agent says it does not follow \(timestamp)") {
                harness.agentLog.components(separatedBy: "past the year 10000; the agent does not follow it").count - 1 == n + 1
            }
            try await eventually(timeout: .seconds(30), "the retained STATE says online again") {
                let state = try await Self.retainedState(harness.broker.url, logger: harness.logger)
                return state.online && state.timestamp < 253_402_300_800_000  // the year 10000
            }
        }
        #expect(agent.isRunning && outdated() == 3)

        // Stopped while it renews: the renewal's clean DISCONNECT leaves no will, so the agent
        // says offline on its next connection (it left the retained STATE online: round 16).
        let online = try await Self.retainedState(harness.broker.url, logger: harness.logger)
        try await Self.publishState(SparkplugHostState(online: false, timestamp: online.timestamp + 1_000), harness, retained: false)
        try await eventually(timeout: .seconds(30), "the agent renews") { outdated() == 4 }
        await agent.stop(signal: SIGTERM)
        let final = try await Self.retainedState(harness.broker.url, logger: harness.logger)
        #expect(!final.online, "\(final); \(ProcessHarness.tail(harness.dir.file("agent.log")))")

        // Just below the cutoff: followed, to a session at the last timestamp a session takes,
        // never past it, so the offline its stop leaves is one the next run follows (a session
        // one past the cutoff left an offline no later run outdated: attack round 18).
        let lastSession: Int64 = 253_402_300_800_000 - 1
        agent = try await harness.startAgent()
        try await Self.publishState(SparkplugHostState(online: false, timestamp: lastSession), harness)
        try await eventually(timeout: .seconds(30), "the agent follows it to the last session timestamp") {
            try await Self.retainedState(harness.broker.url, logger: harness.logger) == SparkplugHostState(online: true, timestamp: lastSession)
        }
        await agent.stop(signal: SIGTERM)
        #expect(try await Self.retainedState(harness.broker.url, logger: harness.logger) == SparkplugHostState(online: false, timestamp: lastSession))
        let refusedBefore = harness.agentLog.components(separatedBy: "the agent does not follow it").count
        agent = try await harness.startAgent()
        try await eventually(timeout: .seconds(30), "the next run follows its own offline") {
            try await Self.retainedState(harness.broker.url, logger: harness.logger) == SparkplugHostState(online: true, timestamp: lastSession)
        }
        #expect(harness.agentLog.components(separatedBy: "the agent does not follow it").count == refusedBefore)
        await harness.stop(agent, aggregator)
    }

    /// `is_historical` metrics (store and forward) reach the sink with the label
    /// `historical=true` and their own (old) times; the live values of the same metrics do not
    /// carry it. Every reading arrives once.
    @Test("historical Sparkplug metrics carry historical=true to the sink; live ones do not")
    func historicalMetricsAreLabelledEndToEnd() async throws {
        try await withHarness { harness in
            let gatewayID = "gw-spb-hist"
            var config = try harness.agentConfig(gatewayID: gatewayID)
            config.mqtt.subscriptions.append(AgentConfig.Subscription(topic: "spBv1.0/#", template: nil, format: .sparkplug))
            let agent = try await harness.startAgent(config)
            let acknowledged = Shared(0)
            var handlers = MQTTClient.Handlers()
            handlers.onPublishAcknowledged = { _ in acknowledged.value.withLock { $0 += 1 } }
            let publisher = try MQTTClient(broker: try MQTTBroker(url: harness.broker.url),
                                           options: .init(clientID: "spb-historical", cleanSession: true), handlers: handlers, logger: harness.logger)
            try publisher.start()
            try await eventually(timeout: .seconds(20), "the publisher connects") { publisher.isConnected }

            let now = WallClock.nowMs()
            var node = SparkplugEdgeNode(group: "plant", edgeNode: "line-7")
            var manifest = Manifest(messagesPublished: 0, entries: [])
            func send(_ message: SparkplugEdgeNode.Message, sensor: String, _ metrics: [SparkplugEdgeNode.Metric], timeMs: Int64) throws {
                try publisher.publish(topic: message.topic, payload: message.payload, qos: 1)
                manifest.messagesPublished += 1
                manifest.entries += metrics.map { .init(gatewayID: gatewayID, sensorID: sensor, metric: $0.name, timeMs: timeMs, value: $0.value) }
            }
            func metric(_ value: Double, historical: Bool = false) -> SparkplugEdgeNode.Metric {
                .init(name: "Temperature", type: .double, value: .double(value), isHistorical: historical)
            }
            try send(node.birth(metrics: [], timeMs: now), sensor: "plant/line-7", [], timeMs: now)
            try send(node.deviceBirth("oven", metrics: [metric(200)], timeMs: now), sensor: "plant/line-7/oven", [metric(200)], timeMs: now)
            // An hour kept while the link was down, a minute apart, then live values.
            for i in 0..<60 {
                let time = now - 3_600_000 + Int64(i) * 60_000
                try send(node.data("oven", metrics: [metric(150 + Double(i), historical: true)], timeMs: time),
                         sensor: "plant/line-7/oven", [metric(150 + Double(i))], timeMs: time)
            }
            for i in 1...10 {
                let time = now + Int64(i) * 1000
                try send(node.data("oven", metrics: [metric(210 + Double(i))], timeMs: time), sensor: "plant/line-7/oven", [metric(210 + Double(i))], timeMs: time)
            }
            try await eventually(timeout: .seconds(20), "the broker acknowledges every publish") { acknowledged.value.withLock { $0 } == manifest.messagesPublished }
            try await eventually("the sink holds every reading") {
                try await Verifier.verify(manifest, sink: harness.sinkURL).found >= manifest.entries.count
            }
            try await Task.sleep(for: .milliseconds(500))
            let report = try await Verifier.verify(manifest, sink: harness.sinkURL)
            #expect(report.passed, "\(report)")

            let db = try SQLiteDatabase(path: harness.directory.file("aggregator/sink.sqlite"), readOnly: true)
            defer { db.close() }
            let rows = try db.withConnection { c throws(SQLiteError) -> [(Int64, Double, String)] in
                var rows: [(Int64, Double, String)] = []
                try c.forEach("SELECT time_ms, value, coalesce(labels, '') FROM readings WHERE gateway_id = 'gw-spb-hist' ORDER BY time_ms") { row in
                    rows.append((row.int64(0), row.double(1), row.string(2) ?? ""))
                }
                return rows
            }
            #expect(rows.count == 71)
            let historical = rows.filter { $0.2 == "{\"historical\":\"true\"}" }
            #expect(historical.count == 60, "\(rows.prefix(3))")
            #expect(historical.allSatisfy { $0.0 < now && (150..<210).contains($0.1) }, "historical values keep their own times")
            #expect(rows.filter { $0.2.isEmpty }.count == 11, "the birth's value and the live ones carry no label")
            publisher.stop()
            try await agent.stop()
        }
    }
}
