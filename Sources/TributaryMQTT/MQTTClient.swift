import CMosquitto
import Logging
import Synchronization

/// A libmosquitto client running its own network thread (`mosquitto_loop_start`).
///
/// Callbacks run on that thread. `onMessage` may block: while it blocks the client reads
/// nothing more from the broker, which is how a full buffer pushes back (the broker keeps
/// messages for a persistent session). libmosquitto reconnects by itself, with backoff.
public final class MQTTClient: @unchecked Sendable {
    // @unchecked Sendable: `mosq` is only used through libmosquitto calls, which are thread-safe
    // (libmosquitto built with threading, as Debian's is); Swift state lives behind `state`.

    public struct Options: Sendable {
        public var clientID: String
        /// false: a persistent session, so the broker keeps QoS 1 messages while we are away.
        public var cleanSession: Bool
        public var keepAliveSeconds: Int32 = 30
        public var reconnectDelayMin: UInt32 = 1
        public var reconnectDelayMax: UInt32 = 30
        public var username: String?
        public var password: String?
        /// Messages libmosquitto keeps in flight towards the broker (QoS 1 publishes).
        public var maxInflight: UInt32 = 100

        public init(clientID: String, cleanSession: Bool) {
            self.clientID = clientID
            self.cleanSession = cleanSession
        }
    }

    /// Callbacks; set them before `start`.
    public struct Handlers: Sendable {
        public var onMessage: @Sendable (MQTTMessage) -> Void = { _ in }
        public var onConnect: @Sendable (_ sessionPresent: Bool) -> Void = { _ in }
        public var onDisconnect: @Sendable (_ reason: Int32) -> Void = { _ in }
        public var onPublishAcknowledged: @Sendable (_ messageID: Int32) -> Void = { _ in }
        /// The broker confirmed every subscription made on the latest connect.
        public var onSubscribed: @Sendable () -> Void = {}
        public init() {}
    }

    private struct State {
        var subscriptions: [(String, Int32)] = []
        var connected = false
        var started = false
        var awaitingSubacks = 0
    }

    public let broker: MQTTBroker
    public let options: Options
    private let handlers: Handlers
    private let logger: Logger
    private let state = Mutex(State())
    private let mosq: OpaquePointer

    private static let libraryInitialized: Bool = {
        mosquitto_lib_init()
        return true
    }()

    public init(broker: MQTTBroker, options: Options, handlers: Handlers, logger: Logger) throws(MQTTError) {
        _ = Self.libraryInitialized
        self.broker = broker
        self.options = options
        self.handlers = handlers
        self.logger = logger
        guard let mosq = mosquitto_new(options.clientID, options.cleanSession, nil) else {
            throw MQTTError(code: MOSQ_ERR_NOMEM.rawValue, operation: "create client", broker: broker.description)
        }
        self.mosq = mosq
        mosquitto_user_data_set(mosq, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311)
        mosquitto_max_inflight_messages_set(mosq, options.maxInflight)
        mosquitto_reconnect_delay_set(mosq, options.reconnectDelayMin, options.reconnectDelayMax, true)
        if let username = options.username {
            mosquitto_username_pw_set(mosq, username, options.password)
        }
        mosquitto_connect_with_flags_callback_set(mosq) { _, userdata, rc, flags in
            MQTTClient.from(userdata).didConnect(rc: rc, sessionPresent: flags & 1 != 0)
        }
        mosquitto_disconnect_callback_set(mosq) { _, userdata, rc in
            MQTTClient.from(userdata).didDisconnect(rc: rc)
        }
        mosquitto_message_callback_set(mosq) { _, userdata, message in
            guard let message else { return }
            MQTTClient.from(userdata).didReceive(message.pointee)
        }
        mosquitto_subscribe_callback_set(mosq) { _, userdata, _, _, _ in
            MQTTClient.from(userdata).didSubscribe()
        }
        mosquitto_publish_callback_set(mosq) { _, userdata, mid in
            MQTTClient.from(userdata).handlers.onPublishAcknowledged(mid)
        }
    }

    private static func from(_ userdata: UnsafeMutableRawPointer?) -> MQTTClient {
        Unmanaged<MQTTClient>.fromOpaque(userdata!).takeUnretainedValue()
    }

    deinit {
        mosquitto_destroy(mosq)
    }

    public var isConnected: Bool { state.withLock { $0.connected } }

    /// Subscriptions are (re)made on every connect, so they survive reconnects.
    public func addSubscription(_ filter: String, qos: Int32 = 1) {
        state.withLock { $0.subscriptions.append((filter, qos)) }
    }

    /// Starts the network thread and connects in the background. A broker that is not up yet
    /// is retried with backoff; `onConnect` reports success.
    public func start() throws(MQTTError) {
        let rc = mosquitto_connect_async(mosq, broker.host, broker.port, options.keepAliveSeconds)
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            // Not fatal: the loop below reconnects. Say why once.
            logger.warning("MQTT broker not reachable yet, will retry", metadata: [
                "broker": "\(broker)", "error": "\(String(cString: mosquitto_strerror(rc)))",
            ])
        }
        let started = mosquitto_loop_start(mosq)
        guard started == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError(code: started, operation: "start network thread", broker: broker.description)
        }
        state.withLock { $0.started = true }
    }

    /// Disconnects cleanly and stops the network thread. Safe to call twice.
    public func stop() {
        let wasStarted = state.withLock { s in
            defer { s.started = false }
            return s.started
        }
        guard wasStarted else { return }
        mosquitto_disconnect(mosq)
        mosquitto_loop_stop(mosq, false)
        state.withLock { $0.connected = false }
    }

    /// Queues a publish; returns its message id. QoS 1 completion is reported by
    /// `onPublishAcknowledged` when the broker's PUBACK arrives.
    @discardableResult
    public func publish(topic: String, payload: [UInt8], qos: Int32 = 1, retain: Bool = false) throws(MQTTError) -> Int32 {
        var mid: Int32 = 0
        let rc = payload.withUnsafeBytes { bytes in
            mosquitto_publish(mosq, &mid, topic, Int32(bytes.count), bytes.baseAddress, qos, retain)
        }
        // libmosquitto queues a QoS 1/2 message before it tries to send it, and returns the
        // send's error: while the broker is away that is NO_CONN (or CONN_LOST, ERRNO), yet the
        // message stays queued and goes out after the reconnect. Not a failure, and publishing
        // it again would send it twice.
        let queuedForLater = qos > 0 && [MOSQ_ERR_NO_CONN, MOSQ_ERR_CONN_LOST, MOSQ_ERR_ERRNO].map(\.rawValue).contains(rc)
        guard rc == MOSQ_ERR_SUCCESS.rawValue || queuedForLater else {
            throw MQTTError(code: rc, operation: "publish", broker: broker.description, topic: topic)
        }
        return mid
    }

    // MARK: callbacks, on the network thread

    private func didConnect(rc: Int32, sessionPresent: Bool) {
        guard rc == 0 else {
            logger.error("MQTT broker refused the connection", metadata: [
                "broker": "\(broker)", "reason": "\(String(cString: mosquitto_connack_string(rc)))",
            ])
            return
        }
        let subscriptions = state.withLock { s in
            s.connected = true
            s.awaitingSubacks = s.subscriptions.count
            return s.subscriptions
        }
        for (filter, qos) in subscriptions {
            let result = mosquitto_subscribe(mosq, nil, filter, qos)
            if result != MOSQ_ERR_SUCCESS.rawValue {
                logger.error("MQTT subscribe failed", metadata: [
                    "broker": "\(broker)", "topic": "\(filter)",
                    "error": "\(String(cString: mosquitto_strerror(result)))",
                ])
            }
        }
        logger.info("MQTT connected", metadata: [
            "broker": "\(broker)", "client_id": "\(options.clientID)", "session_present": "\(sessionPresent)",
        ])
        handlers.onConnect(sessionPresent)
    }

    private func didSubscribe() {
        let done = state.withLock { s in
            s.awaitingSubacks -= 1
            return s.awaitingSubacks == 0
        }
        guard done else { return }
        logger.info("MQTT subscriptions confirmed", metadata: ["broker": "\(broker)", "client_id": "\(options.clientID)"])
        handlers.onSubscribed()
    }

    private func didDisconnect(rc: Int32) {
        state.withLock { $0.connected = false }
        if rc != 0 {
            logger.warning("MQTT connection lost, reconnecting", metadata: [
                "broker": "\(broker)", "error": "\(String(cString: mosquitto_strerror(rc)))",
            ])
        }
        handlers.onDisconnect(rc)
    }

    private func didReceive(_ message: mosquitto_message) {
        let topic = String(cString: message.topic)
        let count = Int(message.payloadlen)
        let payload: [UInt8] = count > 0 && message.payload != nil
            ? Array(UnsafeRawBufferPointer(start: message.payload, count: count)) : []
        handlers.onMessage(MQTTMessage(topic: topic, payload: payload, qos: message.qos, retain: message.retain))
    }
}
