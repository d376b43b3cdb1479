import Foundation
import Logging
import Synchronization
import TributaryMQTT
import TributaryRuntime
import TributarySparkplug

/// The agent as a Sparkplug 3.0 primary host application (`sparkplug.host_id`): it keeps
/// `spBv1.0/STATE/<host id>` true on the broker.
///
/// - Before each connection attempt, the MQTT will: `{"online":false,"timestamp":T}`, QoS 1,
///   retained, T the attempt's time.
/// - Once connected and subscribed (the host's own STATE topic included), `{"online":true,
///   "timestamp":T}` with the same T, QoS 1, retained.
/// - An offline STATE for this host delivered while online (an old session's will, delivered
///   late, or one retained from a crash) is answered at once with the online STATE again.
/// - One whose timestamp is not older than this session's (another host running with the same
///   id stopped, or this machine's clock went back) would make edge nodes, which ignore a STATE
///   older than the last they saw, ignore that online STATE and stay silent: the agent connects
///   again, with a will and an online STATE timestamped after it. The host's own STATE topic is
///   subscribed again on every connect, so the retained one is seen each time.
/// - On a clean stop, `{"online":false,"timestamp":T}` before the DISCONNECT (which makes the
///   broker drop the will).
///
/// The MQTT client's callbacks call it from the network thread; `stop` from the ingest task.
final class PrimaryHost: Sendable {
    let hostID: String
    let topic: String
    private let logger: Logger

    private struct State {
        var client: MQTTClient?
        /// The timestamp of the will registered for the latest connection attempt.
        var timestamp: Int64 = 0
        /// The next session's timestamp is at least this: past an offline STATE it must outdate.
        var floor: Int64 = 0
        /// A new connection was asked for, to outdate such an offline STATE; not asked again
        /// until that connection is made.
        var renewing = false
        /// The last connection was ended cleanly for a renewal, so the broker holds no will of
        /// this host until the next connection says online.
        var willDropped = false
        var stopping = false
        /// The publishes the broker acknowledged since the stop began (the offline STATE's among them).
        var acknowledgedWhileStopping: Set<Int32> = []
    }
    private let state = Mutex(State())

    /// 10000-01-01T00:00:00Z in ms: offline STATEs from then on are not outdated.
    static let latestFollowedTimestamp: Int64 = 253_402_300_800_000
    /// The latest timestamp a session of this host takes, however far it follows: its own
    /// will and offline STATE then stay ones a later run follows (a session one past the
    /// cutoff left an offline STATE the next run would not outdate: attack round 18).
    static let latestSessionTimestamp = latestFollowedTimestamp - 1

    init(hostID: String, logger: Logger) {
        self.hostID = hostID
        topic = SparkplugHostState.topic(hostID: hostID)
        self.logger = logger
    }

    /// The client the STATE messages go out on; set before it starts.
    func attach(_ client: MQTTClient) {
        state.withLock { $0.client = client }
    }

    /// The will for the next connection attempt. Its timestamp goes forward with each attempt
    /// within a run, so an edge node comparing STATE timestamps never takes a new session for
    /// an older one, and an old attempt's will delivered late is always older than this one's.
    func will() -> MQTTClient.Will {
        let timestamp = state.withLock { s in
            // Capped: a STATE timestamp is anyone's to publish, Int64.max included. At the cap
            // the timestamp stays put, and an offline with it is this host's own, answered with
            // online (edge nodes take an online as new as the last STATE they saw).
            s.timestamp = min(Self.latestSessionTimestamp, max(WallClock.nowMs(), s.timestamp + 1, s.floor))
            s.renewing = false
            return s.timestamp
        }
        return MQTTClient.Will(topic: topic, payload: SparkplugHostState(online: false, timestamp: timestamp).payload, qos: 1, retain: true)
    }

    /// Connected, and the broker confirmed the subscriptions: the host is online.
    func subscribed() {
        state.withLock { $0.willDropped = false }
        publishOnline(reason: "connected and subscribed")
    }

    /// A message the broker delivered: true when it is this host's own STATE (handled here,
    /// not data). Another host's STATE is left to the subscriptions, which ignore it.
    func receive(_ message: MQTTMessage) -> Bool {
        guard message.topic == topic else { return false }
        guard let received = SparkplugHostState(payload: message.payload) else {
            logger.warning("sparkplug: this host's STATE topic holds something that is not a STATE payload; publishing online again",
                           metadata: ["topic": "\(topic)", "bytes": "\(message.payload.count)"])
            publishOnline(reason: "unreadable STATE")
            return true
        }
        guard !received.online else { return true }
        // Past the year 10000 a timestamp is not followed: near Int64.max the session's own
        // will would become one no online can outdate (attack rounds 16 and 17).
        let outdatable = received.timestamp < Self.latestFollowedTimestamp
        let (current, client, renew) = state.withLock { s in
            // Equal is this session's own will (a broker restart delivers it): online with the
            // same timestamp outdates it for edge nodes, no new connection needed.
            let newer = received.timestamp > s.timestamp
            if newer && outdatable { s.floor = max(s.floor, received.timestamp + 1) }
            let renew = newer && outdatable && !s.renewing && !s.stopping
            if renew {
                s.renewing = true
                s.willDropped = true
            }
            return (s.timestamp, s.client, renew)
        }
        if received.timestamp <= current {
            // Sparkplug 3.0: a host delivered an offline STATE on its own id republishes online at
            // once, with its current session's timestamp.
            publishOnline(reason: "offline STATE from an earlier session (timestamp \(received.timestamp)): its will, or its clean stop")
        } else if !outdatable {
            logger.error("sparkplug: an offline STATE for this host timestamped past the year 10000; the agent does not follow it, so edge nodes following Sparkplug ignore its online STATE until the retained one is cleared (mosquitto_pub -r -n -t TOPIC)",
                         metadata: ["topic": "\(topic)", "offline_timestamp": "\(received.timestamp)"])
            publishOnline(reason: "offline STATE timestamped past the year 10000")
        } else if renew {
            logger.warning("sparkplug: an offline STATE for this host not older than this session's: another host with the same host_id, or the clock went back; connecting again with a later timestamp, so edge nodes take this host's online STATE",
                           metadata: ["topic": "\(topic)", "offline_timestamp": "\(received.timestamp)", "session_timestamp": "\(current)"])
            client?.renewConnection()
        }
        return true
    }

    func acknowledged(_ messageID: Int32) {
        state.withLock { s in
            if s.stopping { s.acknowledgedWhileStopping.insert(messageID) }
        }
    }

    /// A clean stop: publishes the offline STATE and waits (at most `grace`) for the broker to
    /// acknowledge it; after this nothing says online again. Call before `MQTTClient.stop`.
    func stop(within grace: Duration = .seconds(5)) {
        let (client, willDropped) = state.withLock { s in
            s.stopping = true
            return (s.client, s.willDropped)
        }
        guard let client else { return }
        if willDropped && !client.isConnected {
            // A renewal ended the last connection cleanly, so the broker holds no will to say
            // offline for us, and the retained STATE says online: wait for the next connection
            // (it publishes no online now) and say offline on it (attack round 16).
            let deadline = ContinuousClock.now + grace
            while !client.isConnected && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        }
        let timestamp = state.withLock { $0.timestamp }
        guard client.isConnected else {
            if willDropped {
                logger.error("sparkplug: the retained STATE may still say online: the last connection ended cleanly to renew the session, which leaves no will, and no new one came in time to say offline",
                             metadata: ["topic": "\(topic)"])
            } else {
                logger.warning("sparkplug: not connected to the broker at stop; the broker publishes this host's offline STATE (its will) when it notices",
                               metadata: ["topic": "\(topic)"])
            }
            return
        }
        // The same timestamp as the session's will and online STATE: an edge node takes an
        // offline STATE as the end of the session whose online it saw only when it is not older.
        let offline = SparkplugHostState(online: false, timestamp: timestamp)
        let messageID: Int32
        do {
            messageID = try client.publish(topic: topic, payload: offline.payload, qos: 1, retain: true)
        } catch {
            logger.error("sparkplug: cannot publish the offline STATE", metadata: ["topic": "\(topic)", "error": "\(error)"])
            return
        }
        let deadline = ContinuousClock.now + grace
        while !state.withLock({ $0.acknowledgedWhileStopping.contains(messageID) }) {
            guard ContinuousClock.now < deadline, client.isConnected else {
                logger.warning("sparkplug: the broker did not acknowledge the offline STATE; its will says offline if the DISCONNECT does not arrive",
                               metadata: ["topic": "\(topic)"])
                return
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        logger.info("sparkplug: STATE offline published", metadata: ["topic": "\(topic)", "timestamp": "\(timestamp)"])
    }

    private func publishOnline(reason: String) {
        let (client, timestamp, stopping) = state.withLock { ($0.client, $0.timestamp, $0.stopping) }
        guard let client, !stopping else { return }
        let online = SparkplugHostState(online: true, timestamp: timestamp)
        do {
            try client.publish(topic: topic, payload: online.payload, qos: 1, retain: true)
            logger.info("sparkplug: STATE online published", metadata: ["topic": "\(topic)", "timestamp": "\(timestamp)", "reason": "\(reason)"])
        } catch {
            logger.error("sparkplug: cannot publish the online STATE", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }
}
