import Foundation
import Logging
import Synchronization
import ServiceLifecycle
import TributaryBuffer
import TributaryCore
import TributaryCrypto
import TributaryMQTT
import TributaryRuntime
import TributarySparkplug
import TributarySQLite

/// MQTT in, SQLite buffer out.
///
/// libmosquitto's network thread hands each message to a bounded queue; a committer thread
/// decodes them and commits them in groups (a few ms or a few hundred messages). With
/// libmosquitto 2.0 the PUBACK goes out before our callback runs, so a crash can lose what
/// sits in the queue and the open group: that window is `commit_interval_ms` plus the queue.
public final class IngestService: Service {
    private struct Received: Sendable {
        let message: MQTTMessage
        /// Wall time: stored with the readings.
        let receivedAtMs: Int64
        /// Monotonic time: for the redelivery filter's window, which a clock step must not stretch or shrink.
        let monotonicMs: Int64
        /// The routes in force when it arrived: a message is decoded as the configuration said
        /// when it came, whatever a reload says by the time it is committed.
        let router: MessageRouter
    }

    /// What the committer thread takes from the queue: messages, and now and then an
    /// operator's job on the quarantine (which the committer alone writes).
    private enum Work: Sendable {
        case message(Received)
        case control(ControlJob)
    }

    private struct ControlJob: Sendable {
        let action: QuarantineAction
        let reply: @Sendable (QuarantineOutcome) -> Void
    }

    private let config: AgentConfig
    private let buffer: BufferStore
    /// MQTT thread to committer thread; bounded.
    private let queue: IngestQueue<Work>
    private let stats: AgentStats
    private let logger: Logger
    /// Topic -> decoder -> rules -> readings; replaced by a reload.
    private let router: LiveRouter
    /// The MQTT client while `run()` runs, for a reload's subscriptions.
    private let client = Mutex<MQTTClient?>(nil)
    /// The quota and the disk reserve.
    private let admission: BufferAdmission

    /// What the committer thread keeps between groups (it alone touches it).
    private struct CommitterState {
        var sessions: MessageRouter.Sessions
        var admission: BufferAdmission
        /// The kinds of quarantine reason logged at warning level so far (the first of each).
        var quarantineKindsWarned: Set<String> = []
    }

    public init(config: AgentConfig, buffer: BufferStore, stats: AgentStats, logger: Logger) throws {
        self.config = config
        self.buffer = buffer
        self.stats = stats
        self.logger = logger
        router = LiveRouter(try MessageRouter(subscriptions: config.mqtt.subscriptions, gatewayID: config.gatewayID, hashKey: config.hashKey))
        admission = BufferAdmission(config: config, buffer: buffer, stats: stats, logger: logger)
        queue = IngestQueue<Work>(capacity: config.buffer.queueCapacity)
    }

    /// Runs an operator's job on the quarantine on the committer thread, between two group
    /// commits: a replay routes payloads with the committer's own router and sessions (its
    /// redelivery filter), and no quarantine write races another. Waits behind the messages
    /// queued before it.
    public func perform(_ action: QuarantineAction) async -> QuarantineOutcome {
        let queue = self.queue
        return await withCheckedContinuation { (done: CheckedContinuation<QuarantineOutcome, Never>) in
            let job = ControlJob(action: action) { done.resume(returning: $0) }
            // `push` blocks while the queue is full: on a thread of its own, not the task pool.
            let thread = Thread {
                if !queue.push(.control(job)) { job.reply(.failed("the agent is stopping; run the command again once it is stopped or restarted")) }
            }
            thread.name = "tributary-control-push"
            thread.start()
        }
    }

    public func run() async throws {
        admission.takeReserve()
        let queue = self.queue
        var handlers = MQTTClient.Handlers()
        let stats = self.stats, router = self.router
        let primaryHost = config.sparkplug.hostID.map { PrimaryHost(hostID: $0, logger: self.logger) }
        handlers.onMessage = { message in
            // This host's own STATE is about the agent, not data.
            if let primaryHost, primaryHost.receive(message) { return }
            queue.push(.message(Received(message: message, receivedAtMs: WallClock.nowMs(), monotonicMs: MonotonicClock.nowMs(),
                                         router: router.withLock { $0 })))
        }
        handlers.onConnect = { _ in stats.brokerConnected = true }
        handlers.onDisconnect = { _ in stats.brokerConnected = false }
        handlers.onSubscribed = {
            stats.subscribed = true
            // Sparkplug 3.0: a host's STATE goes out once its subscriptions are in place.
            primaryHost?.subscribed()
        }
        if let primaryHost {
            handlers.onPublishAcknowledged = { primaryHost.acknowledged($0) }
        }
        // The fleet view then shows why a gateway delivers nothing (a refused password, an
        // untrusted certificate) without anyone reading its log.
        handlers.onConnectFailed = { reason in stats.recordError("MQTT: \(reason)") }

        var options = MQTTClient.Options(clientID: config.mqttClientID, cleanSession: false)
        options.keepAliveSeconds = Int32(config.mqtt.keepAliveSeconds)
        options.reconnectDelayMin = UInt32(config.mqtt.reconnectMinSeconds)
        options.reconnectDelayMax = UInt32(config.mqtt.reconnectMaxSeconds)
        options.username = config.mqtt.username
        options.password = config.mqtt.password
        options.tls = config.mqtt.tls
        if let primaryHost {
            options.will = { primaryHost.will() }
            options.resubscribeOnConnect = [primaryHost.topic]
        }
        do {
            options.sessionSubscriptions = try buffer.sessionSubscriptions(clientID: config.mqttClientID)
        } catch {
            logger.warning("cannot read the broker session's subscriptions from the buffer; subscribing to every filter", metadata: ["error": "\(error)"])
        }
        let buffer = self.buffer, clientID = config.mqttClientID, logger = self.logger
        handlers.onSessionSubscriptionsChanged = { filters in
            do {
                try buffer.setSessionSubscriptions(filters, clientID: clientID)
            } catch {
                logger.warning("cannot record the broker session's subscriptions; the next start subscribes to every filter again", metadata: ["error": "\(error)"])
            }
        }
        let client = try MQTTClient(broker: config.mqtt.broker, options: options, handlers: handlers, logger: logger)
        // Under the lock a reload takes: it sees the client with these subscriptions, or none.
        self.client.withLock { current in
            for subscription in router.withLock({ $0.routes.filter { !$0.retired }.map(\.topic) }) {
                client.addSubscription(subscription, qos: 1)
            }
            current = client
        }
        if let primaryHost {
            // Its own STATE, to answer a stale will saying offline (Sparkplug 3.0).
            client.addSubscription(primaryHost.topic, qos: 1)
            primaryHost.attach(client)
        }
        defer { self.client.withLock { $0 = nil } }

        async let committed: Void = withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread { [self] in
                commitLoop(queue, client: client)
                done.resume()
            }
            thread.name = "tributary-committer"
            thread.start()
        }
        try client.start()
        logger.info("ingest started", metadata: [
            "gateway": "\(config.gatewayID)", "broker": "\(config.mqtt.broker)",
            "subscriptions": "\(config.mqtt.subscriptions.map(\.topic))",
        ])

        try? await gracefulShutdown()
        // Draining first: a callback blocked on a full queue (the buffer at its quota, or the
        // disk full, so the committer waits) can then finish, and the committer stops waiting
        // for room. Otherwise `client.stop()` waits for that callback forever and the SIGKILL
        // that follows loses the queue. Then stop reading, and commit what is left.
        queue.drain()
        primaryHost?.stop()
        client.stop()
        stats.brokerConnected = false
        queue.close()
        await committed
        logger.info("ingest stopped; everything received is committed", metadata: ["gateway": "\(config.gatewayID)"])
    }

    /// A reload: the new routes (topics, templates, formats, rules, the hash key) for messages
    /// received from now on, the subscriptions' difference on the live connection, and the
    /// buffer's quota, full policy and retention. Nothing received is lost or decoded twice: a
    /// message already queued keeps the routes it came under.
    func apply(_ config: AgentConfig) throws {
        let fresh = try MessageRouter(subscriptions: config.mqtt.subscriptions, gatewayID: config.gatewayID, hashKey: config.hashKey)
        admission.live.value = config.buffer
        client.withLock { client in
            router.withLock { $0 = $0.replaced(by: fresh) }
            var seen = Set<String>()
            // A primary host's own STATE topic stays (host_id changes only with a restart).
            let hostState = self.config.sparkplug.hostID.map { SparkplugHostState.topic(hostID: $0) }
            let filters = (config.mqtt.subscriptions.map(\.topic) + (hostState.map { [$0] } ?? [])).filter { seen.insert($0).inserted }
            client?.replaceSubscriptions(filters.map { ($0, 1) })
        }
    }

    /// Runs on the committer thread until the queue is closed and empty.
    private func commitLoop(_ queue: IngestQueue<Work>, client: MQTTClient) {
        var state = CommitterState(sessions: .init(redeliveryFilter: restoredRedeliveryFilter(), sparkplug: restoredSparkplugSessions()),
                                   admission: admission)
        defer { saveRedeliveryFilter(state.sessions.redeliveryFilter) }
        while let work = queue.takeGroup(max: config.buffer.commitMaxMessages, windowMs: config.buffer.commitIntervalMs) {
            // A job runs after the messages queued before it are committed, in arrival order.
            var group: [Received] = []
            for item in work {
                switch item {
                case .message(let received):
                    group.append(received)
                case .control(let job):
                    commit(group, queue: queue, client: client, state: &state)
                    group.removeAll()
                    job.reply(handle(job.action, state: &state))
                }
            }
            commit(group, queue: queue, client: client, state: &state)
        }
    }

    /// An operator's job on the quarantine, on the committer thread.
    private func handle(_ action: QuarantineAction, state: inout CommitterState) -> QuarantineOutcome {
        switch action {
        case .replay(let topic):
            // The routes and the quota as last (re)loaded: a replay after a fixed template
            // and a reload decodes with the fix.
            let summary = QuarantineReplay(buffer: buffer, router: router.withLock { $0 }, quotaBytes: state.admission.settings.maxBytes)
                .run(topic: topic, sessions: state.sessions)
            if summary.withheld > 0 { stats.countWithheld(summary.withheld) }
            logger.notice("quarantine replayed", metadata: [
                "gateway": "\(config.gatewayID)", "topic": "\(topic?.description ?? "#")", "examined": "\(summary.examined)",
                "replayed": "\(summary.replayed)", "readings": "\(summary.readings)", "redeliveries": "\(summary.redeliveries)",
                "still_quarantined": "\(summary.stillQuarantined)", "stopped": "\(summary.stopped ?? "-")",
            ])
            return .replayed(summary)
        case .purge(let before, let topic):
            do {
                let purged = try buffer.purgeQuarantine(receivedBeforeMs: before, topic: topic)
                logger.notice("quarantine purged", metadata: [
                    "gateway": "\(config.gatewayID)", "topic": "\(topic?.description ?? "#")", "purged": "\(purged)",
                ])
                return .purged(purged)
            } catch {
                return .failed("cannot purge the quarantine: \(error)")
            }
        }
    }

    /// One group of messages: routed, then committed in one transaction.
    private func commit(_ group: [Received], queue: IngestQueue<Work>, client: MQTTClient, state: inout CommitterState) {
        guard !group.isEmpty else { return }
        var readings: [Reading] = []
        var quarantined: [QuarantinedPayload] = []
        var redeliveries = 0
        // The last payload processed per topic, stored with the group: what a retained
        // message is compared with.
        var digests = storedDigests(forRetainedIn: group)
        for item in group {
            let digest = Self.payloadDigest(item.message.payload)
            let topic = ExactString(item.message.topic)
            // A retained message comes with a new subscription: the broker's last-known value
            // of its topic, not a new reading. Stored only if it is not what this topic last
            // brought (a first subscription, or a value published while the agent was away).
            if item.message.retain, digests[topic] == digest {
                redeliveries += 1
                logger.info("retained MQTT message already stored; not stored again", metadata: ["topic": "\(item.message.topic)"])
                continue
            }
            switch route(item, into: &readings, quarantined: &quarantined, state: &state, client: client) {
            case .readings(_, let withheld):
                digests[topic] = digest
                if withheld > 0 { stats.countWithheld(withheld) }
            case .redelivery:
                digests[topic] = digest
                redeliveries += 1
                logger.info("MQTT redelivery recognised; not stored again", metadata: ["topic": "\(item.message.topic)"])
            case .quarantined:
                break
            }
        }
        state.admission.waitForRoom(isShuttingDown: { queue.isShuttingDown })
        state.admission.waitForHeadroom(isShuttingDown: { queue.isShuttingDown })
        let sessions = state.sessions.sparkplug.takeDefinitions()
        state.admission.commit(readings: readings.count, isShuttingDown: { queue.isShuttingDown }) { () throws(SQLiteError) in
            try buffer.append(readings, quarantined: quarantined, redeliveries: redeliveries, sparkplugSessions: sessions,
                              payloadDigests: digests)
        }
    }

    /// The redelivery window the last stop left in the buffer: what the broker may send again.
    private func restoredRedeliveryFilter() -> RedeliveryFilter {
        var filter = RedeliveryFilter(capacity: config.buffer.redeliveryWindow)
        do {
            filter.restore(try buffer.redeliveryWindow(), nowMs: MonotonicClock.nowMs())
        } catch {
            logger.warning("cannot read the redelivery window the last stop saved; a message the broker sends again may be stored twice", metadata: ["error": "\(error)"])
        }
        return filter
    }

    /// At the end of the committer's life, after its last commit: the messages of the last
    /// minute, for the next start.
    private func saveRedeliveryFilter(_ filter: RedeliveryFilter) {
        do {
            try buffer.setRedeliveryWindow(filter.saved(nowMs: MonotonicClock.nowMs()))
        } catch {
            logger.warning("cannot save the redelivery window; a message the broker sends again after the restart may be stored twice", metadata: ["error": "\(error)"])
        }
    }

    /// What the buffer holds of the topics of the group's retained messages (usually none),
    /// by the topics' bytes (by `String`, a topic and its canonically equivalent twin shared one
    /// digest: a retained value of one was taken for the other's and lost, or stored twice).
    private func storedDigests(forRetainedIn group: [Received]) -> [ExactString: Int64] {
        let topics = Set(group.lazy.filter(\.message.retain).map { ExactString($0.message.topic) })
        guard !topics.isEmpty else { return [:] }
        do {
            return try buffer.lastPayloadDigests(topics)
        } catch {
            // Then a retained message is stored, perhaps again: the safe side of the choice.
            logger.warning("cannot read the payloads last stored; retained messages are stored as they come", metadata: ["error": "\(error)"])
            return [:]
        }
    }

    /// 64 bits of the payload's SHA-256: stable across runs, unlike Swift's hashing.
    static func payloadDigest(_ payload: [UInt8]) -> Int64 {
        BatchChain.digest(of: payload).prefix(8).reduce(Int64(0)) { $0 << 8 | Int64($1) }
    }

    /// Routes one message: its readings appended, or its payload quarantined; what the
    /// Sparkplug sessions noticed is reported.
    private func route(_ item: Received, into readings: inout [Reading], quarantined: inout [QuarantinedPayload],
                       state: inout CommitterState, client: MQTTClient) -> MessageRouter.Result {
        let message = item.message
        let result = item.router.route(topic: message.topic, payload: message.payload, receivedAtMs: item.receivedAtMs,
                                  monotonicMs: item.monotonicMs, into: &readings, sessions: &state.sessions)
        if let outcome = state.sessions.sparkplugOutcome { report(outcome, client: client) }
        if case .quarantined(let reason) = result {
            // The first payload of each kind of reason at warning level, so a misconfigured
            // subscription shows in the log at once; the rest at debug (they are all counted and
            // kept in the buffer's quarantine with their reasons).
            let kind = BufferStore.quarantineKind(reason)
            if state.quarantineKindsWarned.count < 256, state.quarantineKindsWarned.insert(kind).inserted {
                logger.warning("payload quarantined (the first for this reason; later ones are logged at debug level)", metadata: [
                    "gateway": "\(config.gatewayID)", "topic": "\(Printable.clean(message.topic, maxLength: 200))", "reason": "\(reason)",
                ])
            } else {
                logger.debug("payload quarantined", metadata: ["topic": "\(message.topic)", "reason": "\(reason)"])
            }
            quarantined.append(QuarantinedPayload(topic: message.topic, payload: message.payload, reason: reason, receivedAtMs: item.receivedAtMs))
        }
        return result
    }

    /// The Sparkplug sessions the buffer kept from the last run, so the messages the broker held
    /// meanwhile decode at once.
    private func restoredSparkplugSessions() -> SparkplugHost {
        do {
            return SparkplugHost(gatewayID: config.gatewayID, restoring: try buffer.sparkplugSessions())
        } catch {
            logger.warning("cannot read the saved Sparkplug sessions; nodes will be asked for a rebirth", metadata: ["error": "\(error)"])
            return SparkplugHost(gatewayID: config.gatewayID)
        }
    }

    /// Logs and counts what the Sparkplug session noticed, and asks for a rebirth when it should.
    private func report(_ outcome: SparkplugHost.Outcome, client: MQTTClient) {
        for notice in outcome.notices {
            let event: AgentStats.SparkplugEvent = switch notice {
            case .sequenceGap: .sequenceGap
            case .staleDeath: .staleDeath
            case .unsupportedMetric: .unsupportedMetric
            case .birthWithoutBdSeq: .birthWithoutBdSeq
            }
            stats.count(event)
            logger.warning("sparkplug: \(notice)", metadata: ["gateway": "\(config.gatewayID)"])
        }
        guard let node = outcome.rebirth else { return }
        do {
            // QoS 0, as the specification has commands: a lost request is asked again later.
            _ = try client.publish(topic: node.commandTopic, payload: SparkplugHost.rebirthRequest(timestampMs: WallClock.nowMs()), qos: 0)
            stats.count(.rebirthRequested)
            logger.notice("sparkplug: rebirth requested", metadata: ["node": "\(node)", "topic": "\(node.commandTopic)"])
        } catch {
            logger.warning("sparkplug: cannot send the rebirth request", metadata: ["node": "\(node)", "error": "\(error)"])
        }
    }
}

/// The message router in force, shared by the MQTT thread (which stamps each message with it)
/// and a reload (which replaces it).
final class LiveRouter: Sendable {
    private let router: Mutex<MessageRouter>
    init(_ router: MessageRouter) { self.router = Mutex(router) }
    func withLock<T>(_ body: (inout MessageRouter) -> T) -> T { router.withLock { body(&$0) } }
}
