import CMosquitto
import Dispatch
import Foundation
import Logging
import Synchronization
import TributaryCore

/// A libmosquitto client running its own network thread.
///
/// Callbacks run on that thread. `onMessage` may block: while it blocks the client reads
/// nothing more from the broker, which is how a full buffer pushes back (the broker keeps
/// messages for a persistent session). A failed or lost connection is retried forever, with
/// backoff from `reconnectDelayMin` to `reconnectDelayMax`; each failed attempt is logged with
/// its reason (refused credentials, an untrusted certificate...) and passed to `onConnectFailed`.
public final class MQTTClient: @unchecked Sendable {
    // @unchecked Sendable: `mosq` is only used through libmosquitto calls, which are thread-safe
    // once `mosquitto_threaded_set` is on (libmosquitto built with threading, as Debian's is);
    // Swift state lives behind `state`.

    public struct Options: Sendable {
        public var clientID: String
        /// false: a persistent session, so the broker keeps QoS 1 messages while we are away.
        public var cleanSession: Bool
        public var keepAliveSeconds: Int32 = 30
        public var reconnectDelayMin: UInt32 = 1
        public var reconnectDelayMax: UInt32 = 30
        public var username: String?
        public var password: String?
        /// Certificates for an `mqtts://` broker; nil there means: trust the system's CAs, no
        /// client certificate. Setting it for an `mqtt://` broker is an error at `init`.
        public var tls: TLS?
        /// Messages libmosquitto keeps in flight towards the broker (QoS 1 publishes).
        public var maxInflight: UInt32 = 100
        /// The filters the broker's persistent session for this client id held when the last
        /// run ended (`onSessionSubscriptionsChanged` reported them), nil when unknown. With a
        /// session present on connect, only filters it lacks are subscribed (subscribing again
        /// makes the broker send every retained message again) and filters no longer wanted are
        /// unsubscribed (or their messages would keep coming).
        public var sessionSubscriptions: Set<String>?
        /// Filters subscribed again on every connect, session present or not, for the retained
        /// message the broker then sends (a Sparkplug host's own STATE: the last word on it).
        public var resubscribeOnConnect: Set<String> = []
        /// The will: asked for before each connection attempt (the first and every reconnect),
        /// so its payload can carry that attempt's time, and registered with it. Nil: no will.
        public var will: (@Sendable () -> Will)?

        public init(clientID: String, cleanSession: Bool) {
            self.clientID = clientID
            self.cleanSession = cleanSession
        }
    }

    /// How to verify the broker (nil `caFile`: the system's CAs), and how to prove who we are.
    /// The broker's host name is always checked against its certificate: there is no option to
    /// turn that off.
    public typealias TLS = ClientTLSFiles

    /// The message the broker publishes for us when our connection ends without a DISCONNECT
    /// (a crash, a lost network, a missed keepalive). A clean `stop` sends a DISCONNECT, so the
    /// broker drops it: publish what it says yourself before stopping.
    public struct Will: Sendable, Equatable {
        public var topic: String
        public var payload: [UInt8]
        public var qos: Int32
        public var retain: Bool
        public init(topic: String, payload: [UInt8], qos: Int32 = 1, retain: Bool = false) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
        }
    }

    /// The system's trusted CAs (Debian's `ca-certificates`, hashed for OpenSSL), used
    /// without a `caFile`: libmosquitto needs a CA file or directory to turn TLS on.
    public static let systemCADirectory = "/etc/ssl/certs"

    /// Callbacks; set them before `start`.
    public struct Handlers: Sendable {
        public var onMessage: @Sendable (MQTTMessage) -> Void = { _ in }
        public var onConnect: @Sendable (_ sessionPresent: Bool) -> Void = { _ in }
        public var onDisconnect: @Sendable (_ reason: Int32) -> Void = { _ in }
        /// A connection attempt failed, with the reason in an operator's words; a retry follows.
        public var onConnectFailed: @Sendable (_ reason: String) -> Void = { _ in }
        public var onPublishAcknowledged: @Sendable (_ messageID: Int32) -> Void = { _ in }
        /// The broker confirmed every subscription made on the latest connect.
        public var onSubscribed: @Sendable () -> Void = {}
        /// The broker's session now holds exactly these filters (after its SUBACKs and UNSUBACKs):
        /// keep them for `Options.sessionSubscriptions` next time.
        public var onSessionSubscriptionsChanged: @Sendable (Set<String>) -> Void = { _ in }
        public init() {}
    }

    private struct State {
        var subscriptions: [(String, Int32)] = []
        var connected = false
        var started = false
        var stopping = false
        var awaitingSubacks = 0
        /// What the broker's session holds, as far as we know (nil: unknown).
        var sessionSubscriptions: Set<String>?
        /// What went wrong in the current connection attempt, as libmosquitto told us: the
        /// broker's CONNACK refusal, or the last error it logged (OpenSSL's reasons arrive only so).
        var refusal: Int32?
        var libraryErrors: [String] = []
        /// The broker accepted the current attempt (a CONNACK with success).
        var accepted = false
        /// `renewConnection` asked for a new connection (and with it a new will).
        var renewRequested = false
    }

    public let broker: MQTTBroker
    public let options: Options
    private let handlers: Handlers
    private let logger: Logger
    private let state = Mutex(State())
    private let networkLoopEnded = DispatchSemaphore(value: 0)
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
        state.withLock { $0.sessionSubscriptions = options.sessionSubscriptions }
        mosquitto_user_data_set(mosq, Unmanaged.passUnretained(self).toOpaque())
        // Publishes come from other threads than the network loop's.
        mosquitto_threaded_set(mosq, true)
        mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311)
        mosquitto_max_inflight_messages_set(mosq, options.maxInflight)
        if let username = options.username {
            let rc = mosquitto_username_pw_set(mosq, username, options.password)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTError(code: rc, operation: "set username and password", broker: broker.description,
                                detail: "the username must be valid UTF-8 of at most 65535 bytes")
            }
        }
        if broker.tls {
            try configureTLS(options.tls ?? TLS())
        } else if options.tls != nil {
            throw MQTTError(code: MOSQ_ERR_INVAL.rawValue, operation: "set up TLS", broker: broker.description,
                            detail: "TLS settings are given but the broker URL is mqtt:// (plain); use mqtts:// to connect with TLS")
        }
        mosquitto_log_callback_set(mosq) { _, userdata, level, text in
            guard level & MOSQ_LOG_ERR != 0, let text else { return }
            MQTTClient.from(userdata).libraryLogged(String(cString: text))
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
        mosquitto_unsubscribe_callback_set(mosq) { _, userdata, _ in
            MQTTClient.from(userdata).didSubscribe()
        }
        mosquitto_publish_callback_set(mosq) { _, userdata, mid in
            MQTTClient.from(userdata).handlers.onPublishAcknowledged(mid)
        }
    }

    private func configureTLS(_ tls: TLS) throws(MQTTError) {
        func failure(_ rc: Int32, _ detail: String) -> MQTTError {
            MQTTError(code: rc, operation: "set up TLS", broker: broker.description, detail: detail)
        }
        guard (tls.certificateFile == nil) == (tls.keyFile == nil) else {
            throw failure(MOSQ_ERR_INVAL.rawValue, "a client certificate needs both its certificate file and its key file")
        }
        // libmosquitto only checks that it can open the files: say which one it could not.
        for (what, path) in [("CA file", tls.caFile), ("client certificate file", tls.certificateFile), ("client key file", tls.keyFile)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw failure(MOSQ_ERR_INVAL.rawValue, "cannot read the \(what) \(path)")
            }
        }
        // No callback for a key's passphrase would make OpenSSL ask on the terminal, and hang a
        // service: answer "none", so an encrypted key fails at connect with a logged reason.
        var rc = mosquitto_tls_set(mosq, tls.caFile, tls.caFile == nil ? Self.systemCADirectory : nil,
                                   tls.certificateFile, tls.keyFile) { _, _, _, _ in 0 }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw failure(rc, "libmosquitto refused the CA, certificate or key file")
        }
        if tls.caFile == nil {
            // Also OpenSSL's own default locations, where a distribution keeps them elsewhere.
            mosquitto_int_option(mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1)
        }
        // Verify the broker's certificate (SSL_VERIFY_PEER = 1); "tlsv1.2" means 1.2 or newer.
        rc = mosquitto_tls_opts_set(mosq, 1, "tlsv1.2", nil)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw failure(rc, "cannot require TLS 1.2 or newer") }
        // The default, stated: the certificate must name the host we connect to.
        rc = mosquitto_tls_insecure_set(mosq, false)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw failure(rc, "cannot turn on host name verification") }
    }

    private static func from(_ userdata: UnsafeMutableRawPointer?) -> MQTTClient {
        Unmanaged<MQTTClient>.fromOpaque(userdata!).takeUnretainedValue()
    }

    deinit {
        mosquitto_destroy(mosq)
    }

    public var isConnected: Bool { state.withLock { $0.connected } }

    /// Subscriptions are made on connect when the broker's session lacks them, so they survive
    /// reconnects and a broker that lost its sessions.
    public func addSubscription(_ filter: String, qos: Int32 = 1) {
        state.withLock { $0.subscriptions.append((filter, qos)) }
    }

    /// Replaces the subscriptions (a configuration reload): on a live connection the new filters
    /// are subscribed and the ones gone unsubscribed now; otherwise at the next connect, as
    /// always. Returns the filters subscribed and unsubscribed.
    @discardableResult
    public func replaceSubscriptions(_ wanted: [(String, Int32)]) -> (subscribed: [String], unsubscribed: [String]) {
        let (subscribe, unsubscribe, connected) = state.withLock { s in
            let old = Set(s.subscriptions.map(\.0))
            let new = Set(wanted.map(\.0))
            s.subscriptions = wanted
            let subscribe = wanted.filter { !old.contains($0.0) }
            let unsubscribe = old.subtracting(new).sorted()
            if s.connected { s.awaitingSubacks += subscribe.count + unsubscribe.count }
            return (subscribe, unsubscribe, s.connected)
        }
        // Not connected: the next connect compares the session with the new list.
        guard connected else { return (subscribe.map(\.0), unsubscribe) }
        for (filter, qos) in subscribe {
            let result = mosquitto_subscribe(mosq, nil, filter, qos)
            logger.notice("MQTT subscribing to a filter added by a reload", metadata: [
                "broker": "\(broker)", "topic": "\(filter)",
                "error": "\(result == MOSQ_ERR_SUCCESS.rawValue ? "none" : String(cString: mosquitto_strerror(result)))",
            ])
        }
        for filter in unsubscribe {
            let result = mosquitto_unsubscribe(mosq, nil, filter)
            logger.notice("MQTT unsubscribing from a filter removed by a reload", metadata: [
                "broker": "\(broker)", "topic": "\(filter)",
                "error": "\(result == MOSQ_ERR_SUCCESS.rawValue ? "none" : String(cString: mosquitto_strerror(result)))",
            ])
        }
        return (subscribe.map(\.0), unsubscribe)
    }

    /// Ends the current connection the polite way (what was read is acknowledged, then a
    /// DISCONNECT, so the broker drops the will) and connects again after the reconnect delay,
    /// with the will `Options.will` gives then. The persistent session keeps what the broker
    /// queues meanwhile. Callable from any thread, the callbacks included; ignored when not
    /// connected (the next connect asks for a will anyway).
    public func renewConnection() {
        state.withLock { s in
            if s.connected && !s.stopping { s.renewRequested = true }
        }
    }

    /// Starts the network thread and connects in the background. A broker that is not up yet,
    /// or refuses us, is retried with backoff; `onConnect` reports success.
    public func start() throws(MQTTError) {
        let first = state.withLock { s in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        if let will = options.will?() {
            let rc = setWill(will)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                state.withLock { $0.started = false }
                throw MQTTError(code: rc, operation: "set the will", broker: broker.description, topic: will.topic)
            }
        }
        let rc = mosquitto_connect_async(mosq, broker.host, broker.port, options.keepAliveSeconds)
        let errorNumber = errno
        if rc == MOSQ_ERR_INVAL.rawValue {
            state.withLock { $0.started = false }
            throw MQTTError(code: rc, operation: "connect", broker: broker.description)
        }
        let thread = Thread { [self] in
            runNetworkLoop(firstConnect: rc, errorNumber: errorNumber)
            networkLoopEnded.signal()
        }
        thread.name = "mqtt-network"
        thread.start()
    }

    /// Disconnects cleanly and stops the network thread. Safe to call twice.
    public func stop() {
        let wasRunning = state.withLock { s in
            defer { s.started = false }
            s.stopping = s.started
            return s.started
        }
        guard wasRunning else { return }
        // The network thread sends the DISCONNECT itself, after the PUBACKs it owes (see
        // `disconnectAfterFlushing`), and stops on its own.
        networkLoopEnded.wait()
        state.withLock {
            $0.connected = false
            $0.stopping = false
        }
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

    // MARK: the network thread

    /// Runs connections until `stop`. Ours rather than `mosquitto_loop_forever`, which gives up
    /// for good after a TLS error or a refused CONNACK: an operator fixing a certificate or a
    /// password on the broker must not have to restart every agent too.
    private func runNetworkLoop(firstConnect: Int32, errorNumber: Int32) {
        var connectResult = firstConnect
        var connectErrno = errorNumber
        var failuresInARow = 0
        // A stop while connected waits this long, at most, for the DISCONNECT to go out.
        let stopGrace: Duration = .seconds(2)
        while !stopRequested {
            var reached = false
            if connectResult == MOSQ_ERR_SUCCESS.rawValue {
                var rc: Int32 = MOSQ_ERR_SUCCESS.rawValue
                while rc == MOSQ_ERR_SUCCESS.rawValue {
                    rc = mosquitto_loop(mosq, 200, 1)
                    connectErrno = errno
                    let (stopping, connected, renew) = state.withLock { s in
                        defer { s.renewRequested = false }
                        return (s.stopping, s.connected, s.renewRequested)
                    }
                    if stopping {
                        if connected { disconnectAfterFlushing(within: stopGrace) }
                        return
                    }
                    if renew && connected {
                        logger.notice("MQTT reconnecting for a new will", metadata: ["broker": "\(broker)", "client_id": "\(options.clientID)"])
                        disconnectAfterFlushing(within: stopGrace)
                        break
                    }
                }
                reached = state.withLock { $0.accepted }
                if stopRequested { return }
                if !reached { reportFailure(rc: rc, errorNumber: connectErrno) }
            } else {
                reportFailure(rc: connectResult, errorNumber: connectErrno)
            }
            failuresInARow = reached ? 0 : failuresInARow + 1
            guard sleepUnlessStopped(reconnectDelay(afterFailures: failuresInARow)) else { return }
            state.withLock {
                $0.refusal = nil
                $0.libraryErrors = []
                $0.accepted = false
            }
            if let will = options.will?() {
                let rc = setWill(will)
                if rc != MOSQ_ERR_SUCCESS.rawValue {
                    logger.error("MQTT will not set; connecting with the previous one", metadata: [
                        "broker": "\(broker)", "topic": "\(will.topic)", "error": "\(String(cString: mosquitto_strerror(rc)))",
                    ])
                }
            }
            connectResult = mosquitto_reconnect(mosq)
            connectErrno = errno
        }
    }

    private var stopRequested: Bool { state.withLock { $0.stopping } }

    /// Registers `will` for the next CONNECT (before `start`'s, or on the network thread
    /// between connections: never while libmosquitto may be writing a CONNECT).
    private func setWill(_ will: Will) -> Int32 {
        will.payload.withUnsafeBytes { bytes in
            mosquitto_will_set(mosq, will.topic, Int32(bytes.count), bytes.baseAddress, will.qos, will.retain)
        }
    }

    /// A clean stop, on the network thread: nothing more is read, the PUBACKs of the messages
    /// already handed to `onMessage` are written, then the DISCONNECT. (libmosquitto writes a
    /// PUBACK on the loop turn after the one that read its message; a message read after
    /// `mosquitto_disconnect` is a protocol error that closes the socket with those PUBACKs
    /// still queued, and the broker then sent the stored messages again after a restart:
    /// duplicates. Unread messages stay with the broker for the next session.)
    private func disconnectAfterFlushing(within grace: Duration) {
        let deadline = ContinuousClock.now + grace
        func flush() {
            while mosquitto_want_write(mosq), ContinuousClock.now < deadline {
                let rc = mosquitto_loop_write(mosq, 1)
                guard rc == MOSQ_ERR_SUCCESS.rawValue else { return }
                if mosquitto_want_write(mosq) { Thread.sleep(forTimeInterval: 0.005) }  // the socket buffer is full
            }
        }
        flush()
        // libmosquitto closes its socket as soon as the DISCONNECT is written. Closed with the
        // broker's next messages unread, the socket sends a TCP reset, and the broker, seeing
        // the reset, drops the connection without reading the PUBACKs and the DISCONNECT still
        // in its receive buffer: it logged 'closed its connection' or 'Broken pipe' and sent
        // those messages again after the restart (15 to 95 of 60,000 readings doubled in
        // ExecutableTests.repeatedGracefulStops). A duplicate descriptor keeps the connection
        // open past libmosquitto's close, so it can end the polite way.
        let socket = mosquitto_socket(mosq)
        let held = socket >= 0 ? dup(socket) : -1
        mosquitto_disconnect(mosq)
        flush()
        if held >= 0 {
            if !mosquitto_want_write(mosq) { Self.closeAfterPeer(held, until: deadline) }
            close(held)
        }
    }

    /// Half-closes `fd` and reads, discarding, until the broker closes its side (it does once it
    /// has read our DISCONNECT) or `deadline`: then nothing unread is left to turn our close
    /// into a reset. What is discarded was never acknowledged, so the broker keeps it for the
    /// next session.
    private static func closeAfterPeer(_ fd: Int32, until deadline: ContinuousClock.Instant) {
        shutdown(fd, Int32(SHUT_WR))
        var scratch = [UInt8](repeating: 0, count: 16_384)
        while ContinuousClock.now < deadline {
            let left = deadline - ContinuousClock.now
            var wait = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            guard poll(&wait, 1, max(milliseconds, 1)) > 0 else { continue }
            let got = scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got > 0 { continue }
            if got < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            return  // end of stream, or an error: the broker is done with us
        }
    }

    /// Exponential from the minimum to the maximum, as libmosquitto's own backoff.
    private func reconnectDelay(afterFailures failures: Int) -> Duration {
        let low = Double(max(options.reconnectDelayMin, 1))
        let high = Double(max(options.reconnectDelayMax, options.reconnectDelayMin))
        let seconds = min(high, low * pow(2, Double(max(failures - 1, 0))))
        return .milliseconds(Int64(seconds * 1000))
    }

    /// Sleeps in short steps so `stop` is not kept waiting; false when stopped meanwhile.
    private func sleepUnlessStopped(_ delay: Duration) -> Bool {
        let end = ContinuousClock.now + delay
        while ContinuousClock.now < end {
            if stopRequested { return false }
            Thread.sleep(forTimeInterval: min(0.1, Self.seconds(end - ContinuousClock.now)))
        }
        return !stopRequested
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    private func reportFailure(rc: Int32, errorNumber: Int32) {
        let (refusal, libraryErrors) = state.withLock { ($0.refusal, $0.libraryErrors) }
        let reason = MQTTConnectFailure.explain(rc: rc, errorNumber: errorNumber, refusal: refusal, libraryErrors: libraryErrors,
                                                broker: broker, clientID: options.clientID,
                                                hasClientCertificate: options.tls?.certificateFile != nil)
        logger.error("MQTT connection to the broker failed; retrying", metadata: [
            "broker": "\(broker)", "client_id": "\(options.clientID)", "reason": "\(reason)",
        ])
        handlers.onConnectFailed(reason)
    }

    // MARK: callbacks, on the network thread

    private func libraryLogged(_ text: String) {
        // A few lines are enough to explain an attempt; more would only repeat.
        state.withLock { s in
            if s.libraryErrors.count < 4 { s.libraryErrors.append(text) }
        }
    }

    private func didConnect(rc: Int32, sessionPresent: Bool) {
        guard rc == 0 else {
            // Explained, with what to check, when the attempt is reported as failed.
            state.withLock { $0.refusal = rc }
            return
        }
        // A new session holds nothing. A present one holds what the last run left, when we know
        // it; when we do not (a first run after an upgrade), everything is subscribed again once.
        let (subscribe, unsubscribe) = state.withLock { s in
            s.connected = true
            s.accepted = true
            let held: Set<String>? = sessionPresent ? s.sessionSubscriptions : []
            s.sessionSubscriptions = held
            let wanted = Set(s.subscriptions.map(\.0))
            let subscribe = s.subscriptions.filter { held?.contains($0.0) != true || options.resubscribeOnConnect.contains($0.0) }
            let unsubscribe = held.map { $0.subtracting(wanted).sorted() } ?? []
            s.awaitingSubacks = subscribe.count + unsubscribe.count
            return (subscribe, unsubscribe)
        }
        for (filter, qos) in subscribe {
            let result = mosquitto_subscribe(mosq, nil, filter, qos)
            if result != MOSQ_ERR_SUCCESS.rawValue {
                logger.error("MQTT subscribe failed", metadata: [
                    "broker": "\(broker)", "topic": "\(filter)",
                    "error": "\(String(cString: mosquitto_strerror(result)))",
                ])
            }
        }
        for filter in unsubscribe {
            let result = mosquitto_unsubscribe(mosq, nil, filter)
            logger.notice("MQTT unsubscribing from a filter no longer configured (the broker's session still held it)", metadata: [
                "broker": "\(broker)", "topic": "\(filter)",
                "error": "\(result == MOSQ_ERR_SUCCESS.rawValue ? "none" : String(cString: mosquitto_strerror(result)))",
            ])
        }
        logger.info("MQTT connected", metadata: [
            "broker": "\(broker)", "client_id": "\(options.clientID)", "session_present": "\(sessionPresent)",
            "subscribing": "\(subscribe.count)", "unsubscribing": "\(unsubscribe.count)",
        ])
        handlers.onConnect(sessionPresent)
        if subscribe.isEmpty && unsubscribe.isEmpty { subscriptionsSettled() }
    }

    /// A SUBACK or an UNSUBACK.
    private func didSubscribe() {
        let done = state.withLock { s in
            s.awaitingSubacks -= 1
            return s.awaitingSubacks == 0
        }
        if done { subscriptionsSettled() }
    }

    /// The broker's session now holds exactly the configured filters.
    private func subscriptionsSettled() {
        let held = state.withLock { s in
            let held = Set(s.subscriptions.map(\.0))
            s.sessionSubscriptions = held
            return held
        }
        logger.info("MQTT subscriptions confirmed", metadata: ["broker": "\(broker)", "client_id": "\(options.clientID)"])
        handlers.onSessionSubscriptionsChanged(held)
        handlers.onSubscribed()
    }

    private func didDisconnect(rc: Int32) {
        let (wasConnected, stopping) = state.withLock { s in
            defer { s.connected = false }
            return (s.connected, s.stopping)
        }
        // A connection that never came up is reported by the network loop, with its reason.
        if wasConnected && rc != 0 && !stopping {
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
