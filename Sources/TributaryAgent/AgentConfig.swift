import Foundation
import Logging
import TributaryConfig
import TributaryBuffer
import TributaryCore
import TributaryLogging
import TributaryMQTT
import TributarySparkplug
import TributaryWire

/// Everything the agent can be told. Built from defaults, then the YAML file, then flags;
/// tests build it directly.
public struct AgentConfig: Sendable {
    /// The gateway's identity, stamped on every batch. Default: the host name.
    public var gatewayID: String
    /// Where the buffer file (`buffer.sqlite`) lives. Default: /var/lib/tributary.
    public var dataDirectory: String
    public var mqtt: MQTT
    public var buffer: Buffer
    public var aggregator: Aggregator
    /// Where the local status listener serves `/metrics`, `/healthz` and `/readyz`; nil (the
    /// default) runs none. Meant for loopback: it has no authentication.
    public var statusListen: (host: String, port: Int)?
    /// `text` (default) or `json`, one object per line.
    public var logFormat = LogFormat.text
    /// `log_level`: trace, debug, info (default), notice, warning, error, critical.
    public var logLevel = Logger.Level.info
    /// `governance.hash_key_file`: the key of the subscriptions' `hash` rules, read at start.
    public var hashKey: [UInt8]?
    /// `sparkplug:`, what the agent does as a Sparkplug B host application.
    public var sparkplug = Sparkplug()

    public struct Sparkplug: Sendable {
        /// `host_id`: when set, the agent is this Sparkplug 3.0 primary host application: it
        /// keeps `spBv1.0/STATE/<host_id>` saying whether it is online (retained, with an MQTT
        /// will saying offline), so edge nodes that wait for their primary host publish to it.
        /// One topic level: not empty, no '/', '+' or '#'. Nil (the default): no STATE.
        public var hostID: String?
        public init(hostID: String? = nil) { self.hostID = hostID }
    }

    public struct MQTT: Sendable {
        /// Default mqtt://127.0.0.1:1883.
        public var broker: MQTTBroker
        /// Fixed, so the broker keeps the persistent session. Default `tributary-<gateway_id>`.
        public var clientID: String?
        public var keepAliveSeconds = 30
        public var reconnectMinSeconds = 1
        public var reconnectMaxSeconds = 30
        public var username: String?
        /// From `password`, or read from `password_file` at start (one of them, with `username`).
        public var password: String?
        /// `tls:` for an `mqtts://` broker: the CA that signs the broker's certificate
        /// (`ca_file`; without it the system's CAs) and a client certificate (`cert_file` and
        /// `key_file`). Nil with `mqtts://`: the system's CAs, no client certificate.
        public var tls: MQTTClient.TLS?
        public var subscriptions: [Subscription]

        public init(broker: MQTTBroker, subscriptions: [Subscription]) {
            self.broker = broker
            self.subscriptions = subscriptions
        }
    }

    public struct Subscription: Sendable {
        /// The MQTT topic filter, with + and # wildcards.
        public var topic: String
        /// Maps topic levels to `{gateway}`, `{sensor}`, `{metric}`; nil for `sparkplug`, whose
        /// namespace names them (sensor `group/edge node[/device]`, metric the metric name).
        public var template: TopicTemplate?
        public var format: PayloadFormat
        /// The payload member holding the event time (json only).
        public var timeField: String?
        /// `time_zone`: the zone of the time field's ISO 8601 times that carry none (Tasmota's
        /// `Time`); without it such times are quarantined.
        public var timeZone: PayloadTimeZone?
        /// `classification` and `rules`: applied in the agent before a reading is buffered.
        public var policy = SubscriptionPolicy()

        public init(topic: String, template: TopicTemplate?, format: PayloadFormat, timeField: String? = nil) {
            self.topic = topic
            self.template = template
            self.format = format
            self.timeField = timeField
        }
    }

    public struct Buffer: Sendable {
        /// `retention_hours`: readings not sent after this long are deleted from the buffer and
        /// counted as dropped. Nil (the default): kept until sent, within the quota.
        public var retentionHours: Int?
        /// SQLite `synchronous`: `normal` (default) survives a process crash; `full` also a power cut.
        public var synchronous: Synchronous = .normal
        /// A group commit closes after this long...
        public var commitIntervalMs = 5
        /// ...or this many messages, whichever comes first.
        public var commitMaxMessages = 500
        /// Messages handed from the MQTT thread to the committer, at most. When full the MQTT
        /// thread waits, so the broker holds further messages.
        public var queueCapacity = 10_000
        /// `redelivery_window`: how many recent messages the redelivery filter remembers (32 to
        /// 40 bytes each). Default 65,536: a broker that crashed replays what it delivered since
        /// its last autosave, and the replay is recognised within this many messages.
        public var redeliveryWindow = RedeliveryFilter.defaultCapacity
        /// Disk quota for the buffer file's live pages, in bytes; 0 means no quota (the disk is the limit).
        public var maxBytes: Int64 = 1 << 30
        /// What happens at the quota: `block` stops reading from the broker, which holds
        /// messages for the persistent session; `drop_oldest` frees the oldest unsent readings
        /// and counts them. A full disk always behaves as `block`.
        public var fullPolicy: FullPolicy = .block
        /// Space kept free on the buffer's disk (a file beside the buffer) and given up when the
        /// disk fills, so acknowledgements can still be recorded; 0 disables it.
        public var diskReserveBytes: Int64 = 8 << 20

        public typealias Synchronous = BufferStore.Synchronous
        public enum FullPolicy: String, Sendable, CaseIterable {
            case block
            case dropOldest = "drop_oldest"
        }
        public init() {}
    }

    public struct Aggregator: Sendable, Equatable {
        /// `url`, or `urls` for several aggregators sharing one sink: each gateway prefers one
        /// (rendezvous hashing of its id) and fails over to the next. Default http://127.0.0.1:8470.
        public var urls: [String]
        /// The first configured URL (the only one, usually).
        public var url: String { urls[0] }
        /// While failed over, how often the preferred aggregator's `/readyz` is asked whether
        /// it is back (`failback_seconds`). Default 10.
        public var failbackSeconds = 10
        public var compression: ContentEncoding = .zstd
        /// A batch is sealed at this many readings...
        public var batchMaxReadings = 5_000
        /// ...or when its oldest reading is this old, whichever comes first.
        public var batchMaxAgeMs = 1_000
        public var requestTimeoutSeconds = 10
        /// A status-only request is sent after this long without traffic.
        public var heartbeatSeconds = 30
        /// Retry backoff: exponential from the first value to the second, with full jitter.
        public var retryInitialMs = 200
        public var retryMaxMs = 30_000
        /// Batches sent concurrently, at most. The agent adapts within this (AIMD): one more
        /// after a round where all were acknowledged, half after a 429, 503 or timeout.
        public var maxInFlightBatches = 4
        /// This gateway's token, sent as `Authorization: Bearer`, read from `token_file` at
        /// start. Nil: none sent (an aggregator without gateway_auth).
        public var token: String?
        /// Where `token` was read from: read again when it changes, so a token is rotated
        /// without a restart.
        public var tokenFile: String?
        /// `aggregator.tls`, for an https:// URL. Nil: the system's CAs, no client certificate.
        public var tls: ClientTLS?

        public init(url: String) { urls = [url] }
        public init(urls: [String]) { self.urls = urls }
    }

    /// How the agent checks the aggregator (`ca_file`; nil: the system's CAs), and proves
    /// itself to one that asks for a client certificate, whose subject common name must be
    /// this gateway's id (`cert_file`, `key_file`).
    public typealias ClientTLS = ClientTLSFiles

    public init(gatewayID: String, dataDirectory: String, mqtt: MQTT, buffer: Buffer = .init(), aggregator: Aggregator) {
        self.gatewayID = gatewayID
        self.dataDirectory = dataDirectory
        self.mqtt = mqtt
        self.buffer = buffer
        self.aggregator = aggregator
    }

    public var mqttClientID: String { mqtt.clientID ?? "tributary-\(gatewayID)" }
    public var bufferPath: String { dataDirectory + "/buffer.sqlite" }
    public var diskReservePath: String { dataDirectory + "/buffer.reserve" }
}

extension AgentConfig {
    /// Flags given on the command line; each overrides the file.
    public struct Overrides: Sendable {
        public var gatewayID: String?
        public var broker: String?
        /// `--aggregator`, given once or more, each one URL or several comma-separated.
        public var aggregatorURLs: [String]?
        public var aggregatorURL: String? {
            get { aggregatorURLs?.first }
            set { aggregatorURLs = newValue.map { [$0] } }
        }
        public var dataDirectory: String?
        public var statusListen: String?
        public var logFormat: LogFormat?
        public var logLevel: Logger.Level?
        public init(gatewayID: String? = nil, broker: String? = nil, aggregatorURL: String? = nil, dataDirectory: String? = nil,
                    statusListen: String? = nil, logFormat: LogFormat? = nil) {
            self.gatewayID = gatewayID
            self.broker = broker
            self.aggregatorURLs = aggregatorURL.map { [$0] }
            self.dataDirectory = dataDirectory
            self.statusListen = statusListen
            self.logFormat = logFormat
        }
    }

    /// Reads a configuration file (or none), then applies the flags.
    public static func load(file: String?, overrides: Overrides = .init()) throws(ConfigError) -> AgentConfig {
        return try parse(yaml: ConfigSection.readFile(file), file: file, overrides: overrides)
    }

    /// Reads a configuration file (or none), then applies the flags; every problem found, not
    /// just the first (`--check-config`, and a reload refused).
    public static func loadAll(file: String?, overrides: Overrides = .init()) throws(ConfigErrors) -> AgentConfig {
        let yaml: String
        do {
            yaml = try ConfigSection.readFile(file)
        } catch {
            throw ConfigErrors([error])
        }
        return try parseAll(yaml: yaml, file: file, overrides: overrides)
    }

    /// The first problem, if any: see `parseAll`.
    public static func parse(yaml: String, file: String?, overrides: Overrides = .init()) throws(ConfigError) -> AgentConfig {
        do {
            return try parseAll(yaml: yaml, file: file, overrides: overrides)
        } catch {
            throw error.problems[0]
        }
    }

    /// Every problem the file and the flags have, in the order of the file's sections: each
    /// subscription and section is read even when one before it has a problem.
    public static func parseAll(yaml: String, file: String?, overrides: Overrides = .init()) throws(ConfigErrors) -> AgentConfig {
        try ConfigSection.parseAll(yaml: yaml, file: file) { parse($0, file: file, overrides: overrides) }
    }

    /// Nil when a problem was found; the problems are recorded in `root`.
    private static func parse(_ root: ConfigSection, file: String?, overrides: Overrides) -> AgentConfig? {
        let fileGatewayID = root.collect { () throws(ConfigError) in try root.string("gateway_id") } ?? nil
        let gatewayID = overrides.gatewayID ?? fileGatewayID ?? ProcessInfo.processInfo.hostName
        if !GatewayID.isValid(gatewayID) {
            root.record(ConfigError(file: overrides.gatewayID == nil ? file : nil, key: "gateway_id",
                                    message: "'\(gatewayID)' must be 1-128 characters of letters, digits, '-', '_', '.'"))
        }
        let fileDataDirectory = root.collect { () throws(ConfigError) in try root.string("data_dir") } ?? nil
        let dataDirectory = overrides.dataDirectory ?? fileDataDirectory ?? "/var/lib/tributary"

        let mqttSection = root.collect { () throws(ConfigError) in try root.section("mqtt") } ?? nil
        let broker = root.collect { () throws(ConfigError) -> MQTTBroker in
            let fileBrokerURL = try mqttSection?.string("broker")
            let brokerURL = overrides.broker ?? fileBrokerURL ?? "mqtt://127.0.0.1:1883"
            do {
                return try MQTTBroker(url: brokerURL)
            } catch {
                throw ConfigError(file: overrides.broker == nil ? file : nil, key: "mqtt.broker", message: "\(error)",
                                  line: overrides.broker == nil ? mqttSection?.line(of: "broker") : nil)
            }
        }
        var subscriptions: [Subscription] = []
        let hashKey = root.collect { () throws(ConfigError) in
            try root.section("governance").flatMap { g throws(ConfigError) in try parseHashKey(g) }
        } ?? nil
        var subscriptionsRead = true
        if let sections = mqttSection.flatMap({ s in root.collect { () throws(ConfigError) in try s.sections("subscriptions") } }) {
            for section in sections ?? [] {
                let subscription = root.collect { () throws(ConfigError) in
                    var subscription = try parseSubscription(section, gatewayID: gatewayID)
                    subscription.policy = try parsePolicy(section, hashKey: hashKey)
                    return subscription
                }
                if let subscription { subscriptions.append(subscription) } else { subscriptionsRead = false }
            }
        } else if mqttSection != nil {
            subscriptionsRead = false
        }
        // Read even when the broker is wrong, so the section's other problems show too.
        var settings = MQTT(broker: broker ?? MQTTBroker(host: "127.0.0.1", port: 1883), subscriptions: subscriptions)
        let settingsRead: Void? = root.collect { () throws(ConfigError) in
            if let s = mqttSection {
                settings.clientID = try s.string("client_id")
                settings.keepAliveSeconds = try s.int("keepalive_seconds", range: 5...3600) ?? settings.keepAliveSeconds
                settings.reconnectMinSeconds = try s.int("reconnect_min_seconds", range: 1...3600) ?? settings.reconnectMinSeconds
                settings.reconnectMaxSeconds = try s.int("reconnect_max_seconds", range: 1...3600) ?? settings.reconnectMaxSeconds
                settings.username = try s.string("username")
                settings.password = try parsePassword(s)
                if settings.password != nil && settings.username == nil {
                    throw s.error("username", "a password is set (password or password_file) but no username: MQTT 3.1.1 sends a password only with a username")
                }
                settings.tls = try s.section("tls")?.clientTLSFiles()
            }
            if broker != nil { try checkTLS(settings, file: file) }
        }
        let mqtt = broker != nil && settingsRead != nil ? settings : nil

        var buffer = Buffer()
        root.collect { () throws(ConfigError) in
            guard let s = try root.section("buffer") else { return }
            buffer.synchronous = try s.choice("synchronous", of: Buffer.Synchronous.self) ?? buffer.synchronous
            buffer.commitIntervalMs = try s.int("commit_interval_ms", range: 1...10_000) ?? buffer.commitIntervalMs
            buffer.commitMaxMessages = try s.int("commit_max_messages", range: 1...100_000) ?? buffer.commitMaxMessages
            buffer.queueCapacity = try s.int("queue_capacity", range: 1...1_000_000) ?? buffer.queueCapacity
            buffer.redeliveryWindow = try s.int("redelivery_window", range: 256...16_777_216) ?? buffer.redeliveryWindow
            buffer.maxBytes = try s.bytes("max_bytes") ?? buffer.maxBytes
            if buffer.maxBytes != 0 && buffer.maxBytes < 65_536 {
                throw s.error("max_bytes", "\(buffer.maxBytes) is too small for a buffer: use 0 (no quota) or at least 65536")
            }
            buffer.fullPolicy = try s.choice("full_policy", of: Buffer.FullPolicy.self) ?? buffer.fullPolicy
            buffer.diskReserveBytes = try s.bytes("disk_reserve_bytes") ?? buffer.diskReserveBytes
            buffer.retentionHours = try s.int("retention_hours", range: 1...87_600)
        }

        let aggregator = root.collect { () throws(ConfigError) -> Aggregator in
            let aggregatorSection = try root.section("aggregator")
            // The file's are read (and checked) even when the flag overrides them.
            let fileURLs = try ServiceURLs.read(aggregatorSection, prefix: "aggregator")
            let urls: [String]
            if let flag = overrides.aggregatorURLs.flatMap(ServiceURLs.splitFlag) {
                urls = try ServiceURLs.checked(flag, key: "aggregator.urls", file: nil)
            } else {
                urls = fileURLs ?? ["http://127.0.0.1:8470"]
            }
            var aggregator = Aggregator(urls: urls)
            if let s = aggregatorSection {
                aggregator.compression = try s.choice("compression", of: ContentEncoding.self) ?? aggregator.compression
                aggregator.batchMaxReadings = try s.int("batch_max_readings", range: 1...100_000) ?? aggregator.batchMaxReadings
                aggregator.batchMaxAgeMs = try s.int("batch_max_age_ms", range: 1...3_600_000) ?? aggregator.batchMaxAgeMs
                aggregator.requestTimeoutSeconds = try s.int("request_timeout_seconds", range: 1...600) ?? aggregator.requestTimeoutSeconds
                aggregator.heartbeatSeconds = try s.int("heartbeat_seconds", range: 1...86_400) ?? aggregator.heartbeatSeconds
                aggregator.retryInitialMs = try s.int("retry_initial_ms", range: 1...600_000) ?? aggregator.retryInitialMs
                aggregator.retryMaxMs = try s.int("retry_max_ms", range: 1...3_600_000) ?? aggregator.retryMaxMs
                aggregator.maxInFlightBatches = try s.int("max_in_flight_batches", range: 1...64) ?? aggregator.maxInFlightBatches
                aggregator.failbackSeconds = try s.int("failback_seconds", range: 1...3600) ?? aggregator.failbackSeconds
                aggregator.token = try s.secret("token_file", .token(minLength: 16))
                aggregator.tokenFile = try s.string("token_file")
                if let t = try s.section("tls") {
                    guard urls.contains(where: { $0.hasPrefix("https://") }) else {
                        throw s.error("tls", "no aggregator URL is https:// (\(urls.joined(separator: ", "))), so this section would not be used")
                    }
                    aggregator.tls = try t.clientTLSFiles()
                }
            }
            return aggregator
        }
        var statusListen: (host: String, port: Int)?
        root.collect { () throws(ConfigError) in
            let fileStatusListen = try root.string("status_listen")
            if let text = overrides.statusListen ?? fileStatusListen, !text.isEmpty {
                guard let address = HostPort.split(text) else {
                    throw ConfigError(file: overrides.statusListen == nil ? file : nil, key: "status_listen", message: "'\(text)' is not HOST:PORT")
                }
                statusListen = address
            }
        }
        var sparkplug = Sparkplug()
        root.collect { () throws(ConfigError) in
            if let s = try root.section("sparkplug"), let hostID = try s.string("host_id") {
                if let problem = SparkplugHostState.problem(hostID: hostID) { throw s.error("host_id", problem) }
                guard subscriptions.contains(where: { $0.format == .sparkplug }) else {
                    throw s.error("host_id", "no subscription has format: sparkplug, so edge nodes waiting for this host would send it births it does not read: add one (e.g. topic: \"spBv1.0/#\", format: sparkplug) or remove host_id")
                }
                sparkplug.hostID = hostID
            }
        }
        let fileLogFormat = root.collect { () throws(ConfigError) in try root.choice("log_format", of: LogFormat.self) } ?? nil
        let logFormat = overrides.logFormat ?? fileLogFormat ?? .text
        let fileLogLevel = root.collect { () throws(ConfigError) in try root.choice("log_level", of: Logger.Level.self) } ?? nil
        let logLevel = overrides.logLevel ?? fileLogLevel ?? .info
        root.collectUnknownKeys()  // first: a misspelt key explains what is missing below
        if subscriptions.isEmpty && subscriptionsRead {
            root.record(ConfigError(file: file, key: "mqtt.subscriptions", message: "at least one subscription is needed (topic, template, format)"))
        }
        guard let mqtt, let aggregator, root.recordedProblems.isEmpty else { return nil }
        var config = AgentConfig(gatewayID: gatewayID, dataDirectory: dataDirectory, mqtt: mqtt, buffer: buffer, aggregator: aggregator)
        config.statusListen = statusListen
        config.logFormat = logFormat
        config.logLevel = logLevel
        config.hashKey = hashKey
        config.sparkplug = sparkplug
        return config
    }

    /// A subscription's `classification` and `rules` (each `match` a metric pattern, `action`
    /// drop, mask or hash). A `hash` rule needs `governance.hash_key_file`.
    private static func parsePolicy(_ s: ConfigSection, hashKey: [UInt8]?) throws(ConfigError) -> SubscriptionPolicy {
        var policy = SubscriptionPolicy(classification: try s.choice("classification", of: SubscriptionPolicy.Classification.self))
        for rule in try s.sections("rules") ?? [] {
            guard let match = try rule.string("match"), !match.isEmpty else {
                throw rule.error("match", "a metric name or pattern is required, e.g. owner.phone or owner.*")
            }
            guard let action = try rule.choice("action", of: SubscriptionPolicy.FieldRule.Action.self) else {
                throw rule.error("action", "required: drop, mask or hash")
            }
            if action == .hash && hashKey == nil {
                throw rule.error("action", "hash needs governance.hash_key_file, the key the pseudonyms are made with")
            }
            policy.rules.append(.init(match: match, action: action))
        }
        return policy
    }

    /// `governance.hash_key_file`: at least 16 bytes (a trailing newline is not part of it),
    /// the same on every gateway whose pseudonyms must match. Never printed.
    private static func parseHashKey(_ g: ConfigSection) throws(ConfigError) -> [UInt8]? {
        try g.secretBytes("hash_key_file", .key(minLength: 16))
    }

    /// `password` inline, or `password_file`: one line of a file other users cannot read (see
    /// `SecretFile`). The file's contents never appear in an error.
    private static func parsePassword(_ s: ConfigSection) throws(ConfigError) -> String? {
        let inline = try s.string("password")
        guard let path = try s.string("password_file") else { return inline }
        guard inline == nil else {
            throw s.error("password_file", "give either password or password_file (\(path)), not both")
        }
        return try s.secret("password_file", .line)
    }

    /// A `tls:` section with a plain broker is a mistake, not a wish for plaintext: refuse it.
    /// `mqtts://` without `ca_file` trusts the system's CAs, so they must be there.
    private static func checkTLS(_ mqtt: MQTT, file: String?) throws(ConfigError) {
        if mqtt.tls != nil && !mqtt.broker.tls {
            throw ConfigError(file: file, key: "mqtt.tls",
                              message: "TLS settings are given but the broker \(mqtt.broker) is plain MQTT: use mqtts://HOST[:8883], or remove tls")
        }
        if mqtt.broker.tls && mqtt.tls?.caFile == nil
            && !FileManager.default.fileExists(atPath: MQTTClient.systemCADirectory) {
            throw ConfigError(file: file, key: "mqtt.tls.ca_file",
                              message: "the broker is mqtts:// and there are no system CAs (\(MQTTClient.systemCADirectory)) to verify it: set the CA file that signs its certificate")
        }
    }

    private static func parseSubscription(_ s: ConfigSection, gatewayID: String) throws(ConfigError) -> Subscription {
        guard let topic = try s.string("topic"), !topic.isEmpty else { throw s.error("topic", "a topic filter is required") }
        let format = try s.choice("format", of: PayloadFormat.self) ?? .json
        let timeField = try s.string("time_field")
        if timeField != nil, format != .json { throw s.error("time_field", "only the json format has a time field") }
        var timeZone: PayloadTimeZone?
        if let zone = try s.string("time_zone") {
            guard format == .json else { throw s.error("time_zone", "only the json format has times to read in a zone") }
            guard timeField != nil else {
                throw s.error("time_zone", "time_zone is the zone of time_field's times that carry none: set time_field too")
            }
            do {
                timeZone = try PayloadTimeZone(zone)
            } catch {
                throw s.error("time_zone", error.description)
            }
        }
        if format == .sparkplug {
            guard try s.string("template") == nil else {
                throw s.error("template", "the sparkplug format takes no template: spBv1.0/GROUP/TYPE/EDGE_NODE[/DEVICE] names the sensor")
            }
            guard topic.hasPrefix(SparkplugTopic.namespace + "/") else {
                throw s.error("topic", "a sparkplug subscription's topic must be in the \(SparkplugTopic.namespace) namespace, e.g. spBv1.0/#")
            }
            return Subscription(topic: topic, template: nil, format: format)
        }
        guard let templateText = try s.string("template") else { throw s.error("template", "a topic template is required") }
        let template: TopicTemplate
        do {
            template = try TopicTemplate(templateText)
        } catch {
            throw s.error("template", error.description)
        }
        do {
            _ = try PayloadDecoder(format: format, template: template, timeField: timeField, timeZone: timeZone, defaultGatewayID: gatewayID)
        } catch {
            throw s.error("template", error.description)
        }
        var subscription = Subscription(topic: topic, template: template, format: format, timeField: timeField)
        subscription.timeZone = timeZone
        return subscription
    }
}
