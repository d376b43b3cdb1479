import Foundation
import Logging
import ServiceLifecycle
import TributaryBuffer
import TributaryCore
import TributaryCrypto
import TributaryMQTT
import TributarySparkplug

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
    }

    private let config: AgentConfig
    private let buffer: BufferStore
    private let stats: AgentStats
    private let logger: Logger
    private let routes: [(filter: TopicFilter, decoding: Decoding, policy: SubscriptionPolicy)]
    private let pseudonymizer: Pseudonymizer?
    private let reserve: DiskReserve
    /// What the aggregator takes of one reading (the defaults: an aggregator configured with a
    /// larger `max_string_bytes` still gets text values of at most the default).
    private let readingLimits = ReadingLimits()

    /// How a subscription's payloads become readings.
    private enum Decoding {
        /// Each message on its own (json, number).
        case payload(PayloadDecoder)
        /// Sparkplug B: through the edge nodes' sessions in `CommitterState.sparkplug`.
        case sparkplug
    }

    /// What became of one message.
    private enum Decoded {
        /// `count` readings kept (appended), `withheld` dropped by the subscription's rules.
        case readings(count: Int, withheld: Int, carriesEventTime: Bool)
        /// Recognised as a redelivery before decoding (stateful formats must not see it twice).
        case redelivery
        case quarantined
    }

    /// What the committer thread keeps between groups (it alone touches it).
    private struct CommitterState {
        var redeliveryFilter: RedeliveryFilter
        var sparkplug: SparkplugHost
        var lastReserveCheckMs: Int64 = 0
        var abandonedOnShutdown = 0
    }

    public init(config: AgentConfig, buffer: BufferStore, stats: AgentStats, logger: Logger) throws {
        self.config = config
        self.buffer = buffer
        self.stats = stats
        self.logger = logger
        reserve = DiskReserve(config: config)
        routes = try config.mqtt.subscriptions.map { s in
            if s.format == .sparkplug { return (TopicFilter(s.topic), .sparkplug, s.policy) }
            guard let template = s.template else { throw PayloadDecoderConfigError.missingTemplate(format: s.format) }
            return (TopicFilter(s.topic), .payload(try PayloadDecoder(format: s.format, template: template, timeField: s.timeField,
                                                                      defaultGatewayID: config.gatewayID)), s.policy)
        }
        pseudonymizer = config.hashKey.map(Pseudonymizer.init(key:))
    }

    public func run() async throws {
        if !reserve.take() {
            logger.warning("cannot set aside the disk reserve; a full disk may stall the buffer until space is freed", metadata: [
                "path": "\(reserve.path)", "bytes": "\(reserve.bytes)",
            ])
        }
        let queue = IngestQueue<Received>(capacity: config.buffer.queueCapacity)
        var handlers = MQTTClient.Handlers()
        let stats = self.stats
        handlers.onMessage = { message in
            queue.push(Received(message: message, receivedAtMs: WallClock.nowMs(), monotonicMs: MonotonicClock.nowMs()))
        }
        handlers.onConnect = { _ in stats.brokerConnected = true }
        handlers.onDisconnect = { _ in stats.brokerConnected = false }
        handlers.onSubscribed = { stats.subscribed = true }
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
        for subscription in config.mqtt.subscriptions {
            client.addSubscription(subscription.topic, qos: 1)
        }

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
        client.stop()
        stats.brokerConnected = false
        queue.close()
        await committed
        logger.info("ingest stopped; everything received is committed", metadata: ["gateway": "\(config.gatewayID)"])
    }

    /// Runs on the committer thread until the queue is closed and empty.
    private func commitLoop(_ queue: IngestQueue<Received>, client: MQTTClient) {
        var state = CommitterState(redeliveryFilter: restoredRedeliveryFilter(), sparkplug: restoredSparkplugSessions())
        defer { saveRedeliveryFilter(state.redeliveryFilter) }
        while let group = queue.takeGroup(max: config.buffer.commitMaxMessages, windowMs: config.buffer.commitIntervalMs) {
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
                var redelivered = false
                let decoded = decode(item, into: &readings, quarantined: &quarantined, state: &state, client: client)
                if case .quarantined = decoded {} else { digests[topic] = digest }
                switch decoded {
                case .redelivery:
                    redelivered = true
                // Only a payload that carries its own event time identifies its readings.
                case .readings(let count, _, carriesEventTime: true)
                    where state.redeliveryFilter.isRedelivery(topic: item.message.topic, payload: item.message.payload, nowMs: item.monotonicMs):
                    readings.removeLast(count)
                    redelivered = true
                case .readings(_, let withheld, _):
                    if withheld > 0 { stats.countWithheld(withheld) }
                case .quarantined:
                    break
                }
                if redelivered {
                    redeliveries += 1
                    logger.info("MQTT redelivery recognised; not stored again", metadata: ["topic": "\(item.message.topic)"])
                }
            }
            waitForRoom(queue)
            let sessions = state.sparkplug.takeDefinitions()
            commit(readings, quarantined, redeliveries: redeliveries, sparkplugSessions: sessions, payloadDigests: digests, queue: queue, state: &state)
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

    /// Appends the item's readings or quarantines it.
    private func decode(_ item: Received, into readings: inout [Reading], quarantined: inout [QuarantinedPayload],
                        state: inout CommitterState, client: MQTTClient) -> Decoded {
        let topic = item.message.topic
        func quarantine(_ reason: String) -> Decoded {
            logger.debug("payload quarantined", metadata: ["topic": "\(topic)", "reason": "\(reason)"])
            quarantined.append(QuarantinedPayload(topic: topic, payload: item.message.payload, reason: reason, receivedAtMs: item.receivedAtMs))
            return .quarantined
        }
        guard let route = routes.first(where: { $0.filter.matches(topic) }) else {
            return quarantine("no subscription matches the topic")
        }
        // The subscription's rules, on this message's readings only, before anything is buffered;
        // the count returned is what was kept, so a redelivery takes back exactly that.
        let start = readings.count
        func governed(carriesEventTime: Bool) -> Decoded {
            let withheld = route.policy.apply(to: &readings, from: start, pseudonymizer: pseudonymizer)
            // A reading the aggregator would refuse is never buffered: sealed into a batch, it
            // would have the whole batch set aside. Its message is quarantined whole (so a replay
            // after a fix brings all of it back) and the rest of the stream is unharmed.
            for reading in readings[start...] {
                guard let problem = readingLimits.violation(of: reading) else { continue }
                readings.removeSubrange(start...)
                return quarantine("reading \(Printable.clean(reading.sensorID, maxLength: 64))/\(Printable.clean(reading.metric, maxLength: 64)): \(problem)")
            }
            return .readings(count: readings.count - start, withheld: withheld, carriesEventTime: carriesEventTime)
        }
        switch route.decoding {
        case .payload(let decoder):
            do {
                let decoded = try decoder.decodeMessage(topic: topic, payload: item.message.payload, receivedAtMs: item.receivedAtMs)
                readings += decoded.readings
                return governed(carriesEventTime: decoded.carriesEventTime)
            } catch {
                return quarantine(error.description)
            }
        case .sparkplug:
            // Every Sparkplug payload carries its seq, so the same bytes again are a redelivery;
            // checked first, or the repeat would read as a sequence gap.
            if state.redeliveryFilter.isRedelivery(topic: topic, payload: item.message.payload, nowMs: item.monotonicMs) {
                return .redelivery
            }
            let outcome = state.sparkplug.receive(topic: topic, payload: item.message.payload, receivedAtMs: item.receivedAtMs)
            report(outcome, client: client)
            if let reason = outcome.quarantineReason { return quarantine(reason) }
            readings += outcome.readings
            return governed(carriesEventTime: false)
        }
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

    /// Enforces the buffer quota before a group is committed. `block` waits here: the queue
    /// fills, the MQTT thread stops reading, and the broker holds the rest for our persistent
    /// session. `drop_oldest` frees the oldest unsent readings, each one counted.
    private func waitForRoom(_ queue: IngestQueue<Received>) {
        let quota = config.buffer.maxBytes
        guard quota > 0 else { return }
        var blocked = false
        var delay = 0.02
        defer {
            if blocked {
                stats.bufferFull = false
                logger.notice("buffer below its quota again; reading from the broker", metadata: ["gateway": "\(config.gatewayID)"])
            }
        }
        while true {
            do {
                let used = try buffer.sizeBytes()
                if used < quota { return }
                if config.buffer.fullPolicy == .dropOldest {
                    let dropped = try buffer.dropOldest()
                    if dropped.total > 0 {
                        logger.warning("buffer quota reached; dropped the oldest unsent readings", metadata: [
                            "gateway": "\(config.gatewayID)", "dropped": "\(dropped.total)", "quota_bytes": "\(quota)",
                            "batch": "\(dropped.sealedBatch.map(String.init) ?? "-")", "dropped_total": "\(buffer.snapshot.droppedTotal)",
                        ])
                        continue
                    }
                    // Nothing droppable is left (only batches being sent, or sent once and
                    // unanswered): wait for their acknowledgements.
                }
                if !blocked {
                    blocked = true
                    stats.bufferFull = true
                    let message = "buffer quota of \(quota) bytes reached (\(used) in use): not reading from the broker until batches are acknowledged"
                    logger.warning("\(message)", metadata: ["gateway": "\(config.gatewayID)", "policy": "\(config.buffer.fullPolicy.rawValue)"])
                    stats.recordError(message)
                }
            } catch {
                logger.error("cannot check the buffer quota; retrying", metadata: ["gateway": "\(config.gatewayID)", "error": "\(error)"])
            }
            if queue.isShuttingDown {
                // Shutting down: what we received is already acknowledged to the broker, so
                // keeping it a little over the quota beats losing it.
                logger.warning("shutting down while the buffer is full: committing the last group over the quota")
                return
            }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 0.5)
        }
    }

    /// How long a stopping agent keeps trying to commit what it holds when the buffer cannot
    /// be written.
    static let shutdownCommitMs: Int64 = 10_000

    /// Commits one group, retrying while the disk refuses: the queue fills meanwhile and the
    /// MQTT thread waits, so the broker holds the rest (the `block` behaviour).
    private func commit(_ readings: [Reading], _ quarantined: [QuarantinedPayload], redeliveries: Int, sparkplugSessions: String?,
                        payloadDigests: [ExactString: Int64], queue: IngestQueue<Received>, state: inout CommitterState) {
        var delay = 0.1
        var stalled = false
        var shutdownDeadline: Int64?
        defer {
            if stalled {
                stats.bufferFull = false
                logger.notice("buffer writable again; reading from the broker", metadata: ["gateway": "\(config.gatewayID)"])
            }
        }
        while true {
            do {
                try buffer.append(readings, quarantined: quarantined, redeliveries: redeliveries, sparkplugSessions: sparkplugSessions,
                                  payloadDigests: payloadDigests)
                retakeReserveNowAndThen(force: stalled, state: &state)
                return
            } catch {
                stalled = true
                stats.bufferFull = true
                let what = error.isDiskFull ? "buffer disk is full" : "buffer write failed"
                logger.error("\(what): not reading from the broker (it holds the rest) until \(readings.count) readings are committed; retrying", metadata: [
                    "gateway": "\(config.gatewayID)", "error": "\(error)",
                ])
                stats.recordError("\(what): \(error)")
                reserve.releaseIfDiskFull(error, logger: logger, gateway: config.gatewayID)
                if queue.isShuttingDown {
                    // What we hold was acknowledged to the broker: the released reserve may
                    // make room, so try a little longer, but never past a service manager's
                    // stop timeout (30 s in our unit); then give up and say exactly what.
                    let now = MonotonicClock.nowMs()
                    let deadline = shutdownDeadline ?? now + Self.shutdownCommitMs
                    shutdownDeadline = deadline
                    if now >= deadline {
                        abandonOnShutdown(readings.count, state: &state)
                        return
                    }
                } else if error.isDiskFull {
                    waitForFreedSpace(queue)
                }
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, queue.isShuttingDown ? 1 : 5)
            }
        }
    }

    /// After a full disk, waits until acknowledged batches freed pages inside the buffer file,
    /// the disk has room again, or nothing more can be freed: retrying at once would only
    /// fill what the reserve freed.
    private func waitForFreedSpace(_ queue: IngestQueue<Received>) {
        let needed: Int64 = 256 << 10
        var delay = 0.05
        while !queue.isShuttingDown {
            let inFile = (try? buffer.freeBytesInFile()) ?? 0
            let onDisk = DiskReserve.availableBytes(near: buffer.path) ?? 0
            let nothingToFree = buffer.snapshot.sealedBatches == 0
            if inFile >= needed || onDisk >= needed + reserve.bytes || nothingToFree { return }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 1)
        }
    }

    /// Takes the disk reserve again once the disk has room for it: checked after a stall and
    /// otherwise every few seconds (the uploader may have released it).
    private func retakeReserveNowAndThen(force: Bool, state: inout CommitterState) {
        let now = MonotonicClock.nowMs()
        guard reserve.bytes > 0, force || now - state.lastReserveCheckMs >= 5000 else { return }
        state.lastReserveCheckMs = now
        guard !reserve.isHeld else { return }
        guard let available = DiskReserve.availableBytes(near: buffer.path), available >= 2 * reserve.bytes, reserve.take() else { return }
        logger.notice("disk reserve restored", metadata: ["gateway": "\(config.gatewayID)", "reserve_bytes": "\(reserve.bytes)"])
    }

    /// Shutting down while the buffer cannot be written: what was received from the broker
    /// (already acknowledged to it) is given up, and the exact count said.
    private func abandonOnShutdown(_ count: Int, state: inout CommitterState) {
        state.abandonedOnShutdown += count
        logger.critical("shutting down while the buffer cannot be written: readings received from the broker are lost", metadata: [
            "gateway": "\(config.gatewayID)", "lost_now": "\(count)", "lost_total": "\(state.abandonedOnShutdown)",
        ])
    }
}

