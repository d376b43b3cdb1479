import Foundation
import Logging
import NIOCore
import TributaryClickHouse
import TributarySinks
import TributaryConfig
import TributaryLogging
import TributaryWire

/// Everything the aggregator can be told: defaults, then the YAML file, then flags.
public struct AggregatorConfig: Sendable {
    /// A sink named by its URL (TributarySinks), under the name the configuration has always used.
    public typealias SinkURL = TributarySinks.SinkURL
    public typealias SinkURLError = TributarySinks.SinkURLError

    /// Default 127.0.0.1.
    public var listenHost: String
    /// Default 8470; 0 picks a free port (tests).
    public var listenPort: Int
    /// Holds `registry.sqlite` and, by default, the SQLite sink. Default /var/lib/tributary-aggregator.
    public var dataDirectory: String
    /// `sqlite:PATH` or `clickhouse://...`. Default `sqlite:<data_dir>/sink.sqlite`.
    public var sink: SinkURL
    /// How to write to a ClickHouse sink (the `clickhouse:` section).
    public var clickHouse = ClickHouseSink.Settings()
    /// A gateway silent this long is shown stale. Default 120.
    public var staleAfterSeconds = 120
    /// `metrics.per_gateway`: which gateways get their own series on `/metrics`. Default
    /// `top:1000`, the 1,000 most in trouble: a fleet of 10,000 would otherwise be 110,000 series.
    public var metricsPerGateway = PerGatewayMetrics.top(1000)
    public var limits = Limits()
    /// Where the operator token for the admin API and `/metrics` comes from (the `admin:` section).
    public var adminToken: AdminTokenSource
    /// `admin.tokens_file`: operators' tokens by name, one `NAME TOKEN` a line, reread on change.
    public var operatorTokenFile: String?
    /// `gateway_auth.token_file`: per-gateway bearer tokens for `/v1/batches` (see
    /// `NamedTokens`). Nil (the default): batches are taken from anyone who reaches the port.
    public var gatewayTokenFile: String?
    /// `sink_allow_list`: the only sinks this aggregator may write to, as sink URLs (compared by
    /// where the data goes: the SQLite file, or ClickHouse's scheme, host, port and database).
    /// Nil: whatever `sink` or `--sink` names.
    public var sinkAllowList: [SinkURL]?
    public var sinkIsAllowed: Bool { !keepsLocalCopy || sinkAllowList?.contains { $0.destination == sink.destination } ?? true }
    /// The `tls:` section: HTTPS, and optionally gateway client certificates. Nil: plain HTTP.
    public var tls: ServerTLS?
    /// `audit.dir`: where the audit log's day files go. Default `<data_dir>/audit`.
    public var auditDirectory: String?
    /// `audit.retention_days`: day files older than this are deleted. Default 180.
    public var auditRetentionDays = 180
    /// `audit.max_bytes`: the audit directory's cap; past it events are counted, not written,
    /// and an error logged. Default 20 GiB.
    public var auditMaxBytes: Int64 = 20 << 30
    /// `text` (default) or `json`, one object per line.
    public var logFormat = LogFormat.text
    /// `log_level`: trace, debug, info (default), notice, warning, error, critical.
    public var logLevel = Logger.Level.info
    /// `upstream:` (or `--upstream`): the next tier. Nil: this aggregator is the top of its tree.
    public var upstream: Upstream?
    /// `relay_id`: this relay's name in forwarded statuses and the next tier's tables. Default
    /// the host name.
    public var relayID = AggregatorConfig.hostName
    /// `trusted_relays`: relay ids (proved by `gateway_auth` token or client certificate like a
    /// gateway's) that may forward batches of other gateways. Empty: none.
    public var trustedRelays: [String] = []
    /// False with `sink: none`: a relay that keeps no copy of its own and only forwards.
    public var keepsLocalCopy = true
    /// Where a relay keeps what it has not forwarded yet.
    public var spoolPath: String { dataDirectory + "/spool.sqlite" }

    /// The operator token: inline, or a file. The default file, `<data_dir>/admin-token`, is
    /// created with a random token on first start, so the admin API is never open by accident.
    public enum AdminTokenSource: Sendable, Equatable {
        case inline(String)
        case file(path: String, createIfMissing: Bool)
        /// No unnamed token: only `admin.tokens_file`'s named ones open the API.
        case none
    }

    /// HTTPS for everything the aggregator serves, and, with `client_ca_file`, gateways that
    /// prove who they are by a client certificate whose subject common name is their id.
    public struct ServerTLS: Sendable, Equatable {
        /// PEM: the aggregator's certificate, then any intermediates.
        public var certificateFile: String
        public var keyFile: String
        /// PEM: the CA(s) that sign gateway certificates. Nil: no client certificates asked for.
        public var clientCAFile: String?
        public var clientCertificates = ClientCertificates.optional

        public enum ClientCertificates: String, Sendable, CaseIterable {
            /// Asked for and verified when presented; a connection without one may still be an
            /// operator (tributaryctl, Prometheus) or a gateway with a token.
            case optional
            /// The handshake fails without a valid one: every client needs a certificate.
            case required
        }

        public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.clientCAFile = clientCAFile
        }
    }

    public struct Limits: Sendable {
        /// Largest request body accepted, compressed. Default 16 MiB.
        public var maxBodyBytes = 16 << 20
        /// Largest body after decompression; a bomb is refused here. Default 64 MiB.
        public var maxDecompressedBytes = 64 << 20
        /// Bodies decompressed and decoded at once, each taking up to about twice
        /// `maxDecompressedBytes` meanwhile: this bounds that memory. Default 4.
        public var maxConcurrentDecodes = 4
        /// Batches being written to the sink at once; past it, 429. Default 256: with 64, a fleet
        /// of 10,000 gateways sending small batches met 9,000 answers of 429 a minute and lags
        /// of 10-24 s from a sink that kept up; with 256, none and under a second (issue 26's
        /// fleet-10k). Memory stays bounded by `max_in_flight_bytes`.
        public var maxInFlightBatches = 256
        /// Bytes (compressed bodies) being written at once; past it, 429. Default 64 MiB.
        public var maxInFlightBytes = 64 << 20
        public var batch = BatchLimits()
        /// Gateways the fleet registry holds at most; a request from a new one past it is 503
        /// (retried by its agent until an operator raises it). Default 20,000.
        public var maxGateways = 20_000
        /// Connections, requests per address, and how slow a request may arrive.
        public var connections = ConnectionLimits.Settings()
        public init() {}
    }

    public init(listenHost: String = "127.0.0.1", listenPort: Int = 8470, dataDirectory: String, sink: SinkURL? = nil) {
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.dataDirectory = dataDirectory
        self.sink = sink ?? .sqlite(path: dataDirectory + "/sink.sqlite")
        adminToken = .file(path: dataDirectory + "/admin-token", createIfMissing: true)
    }

    public struct Overrides: Sendable {
        public var listen: String?
        public var dataDirectory: String?
        public var sink: String?
        public var logFormat: LogFormat?
        public var upstream: String?
        public var logLevel: Logger.Level?
        public init(listen: String? = nil, dataDirectory: String? = nil, sink: String? = nil, logFormat: LogFormat? = nil, upstream: String? = nil) {
            self.listen = listen
            self.dataDirectory = dataDirectory
            self.sink = sink
            self.logFormat = logFormat
            self.upstream = upstream
        }
    }

    public static func load(file: String?, overrides: Overrides = .init()) throws(ConfigError) -> AggregatorConfig {
        return try parse(yaml: ConfigSection.readFile(file), file: file, overrides: overrides)
    }

    /// Reads a configuration file (or none), then applies the flags; every problem found, not
    /// just the first (`--check-config`, and a reload refused).
    public static func loadAll(file: String?, overrides: Overrides = .init()) throws(ConfigErrors) -> AggregatorConfig {
        let yaml: String
        do {
            yaml = try ConfigSection.readFile(file)
        } catch {
            throw ConfigErrors([error])
        }
        return try parseAll(yaml: yaml, file: file, overrides: overrides)
    }

    /// The first problem, if any: see `parseAll`.
    public static func parse(yaml: String, file: String?, overrides: Overrides = .init()) throws(ConfigError) -> AggregatorConfig {
        do {
            return try parseAll(yaml: yaml, file: file, overrides: overrides)
        } catch {
            throw error.problems[0]
        }
    }

    /// Every problem the file and the flags have: each section is read even when one before it
    /// has a problem.
    public static func parseAll(yaml: String, file: String?, overrides: Overrides = .init()) throws(ConfigErrors) -> AggregatorConfig {
        try ConfigSection.parseAll(yaml: yaml, file: file) { parse($0, file: file, overrides: overrides) }
    }

    /// The problems are recorded in `root`; the configuration returned is good only without any.
    private static func parse(_ root: ConfigSection, file: String?, overrides: Overrides) -> AggregatorConfig {
        let fileListen = root.collect { () throws(ConfigError) in try root.string("listen") } ?? nil
        let listen = overrides.listen ?? fileListen ?? "127.0.0.1:8470"
        let address = HostPort.split(listen)
        if address == nil {
            root.record(ConfigError(file: overrides.listen == nil ? file : nil, key: "listen", message: "'\(listen)' is not HOST:PORT"))
        }
        let fileDataDirectory = root.collect { () throws(ConfigError) in try root.string("data_dir") } ?? nil
        let dataDirectory = overrides.dataDirectory ?? fileDataDirectory ?? "/var/lib/tributary-aggregator"
        var config = AggregatorConfig(listenHost: address?.host ?? "127.0.0.1", listenPort: address?.port ?? 8470, dataDirectory: dataDirectory)
        let fileSink = root.collect { () throws(ConfigError) in try root.string("sink") } ?? nil
        var sinkRead = true
        if let sinkText = overrides.sink ?? fileSink, sinkText != "none" {
            do {
                config.sink = try SinkURL(sinkText)
            } catch {
                root.record(ConfigError(file: overrides.sink == nil ? file : nil, key: "sink", message: error.description))
                sinkRead = false
            }
        }
        config.keepsLocalCopy = (overrides.sink ?? fileSink) != "none"
        root.collect { () throws(ConfigError) in
            if let s = try root.section("clickhouse") {
                try config.applyClickHouseSection(s)
            }
        }
        config.applyTheRest(root, file: file, overrides: overrides, fileSink: fileSink, sinkRead: sinkRead)
        root.collect { () throws(ConfigError) in try config.applyRelaySections(root, file: file, upstreamFlag: overrides.upstream, sinkText: overrides.sink ?? fileSink) }
        let fileLogFormat = root.collect { () throws(ConfigError) in try root.choice("log_format", of: LogFormat.self) } ?? nil
        config.logFormat = overrides.logFormat ?? fileLogFormat ?? .text
        let fileLogLevel = root.collect { () throws(ConfigError) in try root.choice("log_level", of: Logger.Level.self) } ?? nil
        config.logLevel = overrides.logLevel ?? fileLogLevel ?? .info
        root.collectUnknownKeys()
        return config
    }

    /// The sections after the sink, each read on its own.
    private mutating func applyTheRest(_ root: ConfigSection, file: String?, overrides: Overrides, fileSink: String?, sinkRead: Bool) {
        var config = self
        defer { self = config }
        root.collect { () throws(ConfigError) in
            guard let allowed = try root.strings("sink_allow_list") else { return }
            var list: [SinkURL] = []
            for (index, text) in allowed.enumerated() {
                do {
                    list.append(try SinkURL(text))
                } catch {
                    throw ConfigError(file: file, key: "sink_allow_list[\(index)]", message: "\(error)")
                }
            }
            config.sinkAllowList = list
            guard config.sinkIsAllowed || !sinkRead else {
                throw ConfigError(file: file, key: "sink_allow_list",
                                  message: "the sink \(config.sink) (from \(overrides.sink == nil ? fileSink == nil ? "the default" : "sink" : "--sink")) is not in this list; the aggregator writes only to sinks named there")
            }
        }
        root.collect { () throws(ConfigError) in
            config.staleAfterSeconds = try root.int("stale_after_seconds", range: 1...86_400 * 30) ?? config.staleAfterSeconds
        }
        root.collect { () throws(ConfigError) in
            if let s = try root.section("metrics"), let text = try s.string("per_gateway") {
                guard let choice = PerGatewayMetrics(text) else {
                    throw s.error("per_gateway", "'\(text)' is not none, all or top:N (N from 1 to 1000000)")
                }
                config.metricsPerGateway = choice
            }
        }
        root.collect { () throws(ConfigError) in
            guard let s = try root.section("limits") else { return }
            config.limits.maxBodyBytes = try s.bytes("max_body_bytes", range: 1024...(1 << 30)) ?? config.limits.maxBodyBytes
            config.limits.maxDecompressedBytes = try s.bytes("max_decompressed_bytes", range: 1024...(1 << 31)) ?? config.limits.maxDecompressedBytes
            config.limits.maxConcurrentDecodes = try s.int("max_concurrent_decodes", range: 1...256) ?? config.limits.maxConcurrentDecodes
            config.limits.maxInFlightBatches = try s.int("max_in_flight_batches", range: 1...100_000) ?? config.limits.maxInFlightBatches
            config.limits.maxInFlightBytes = try s.bytes("max_in_flight_bytes", range: 1024...(1 << 34)) ?? config.limits.maxInFlightBytes
            config.limits.batch.maxReadings = try s.int("max_readings_per_batch", range: 1...10_000_000) ?? config.limits.batch.maxReadings
            config.limits.batch.maxStringBytes = try s.bytes("max_string_bytes", range: 16...(1 << 20)) ?? config.limits.batch.maxStringBytes
            config.limits.maxGateways = try s.int("max_gateways", range: 1...10_000_000) ?? config.limits.maxGateways
            var c = config.limits.connections
            c.maxConnections = try s.int("max_connections", range: 16...1_000_000) ?? c.maxConnections
            c.maxConnectionsPerAddress = try s.int("max_connections_per_address", range: 1...1_000_000) ?? c.maxConnectionsPerAddress
            c.maxInFlightPerAddress = try s.int("max_in_flight_per_address", range: 1...100_000) ?? c.maxInFlightPerAddress
            c.maxInFlightBytesPerAddress = try s.bytes("max_in_flight_bytes_per_address", range: 1024...(1 << 34))
                ?? max(config.limits.maxInFlightBytes / 4, 1024)
            if let seconds = try s.int("header_timeout_seconds", range: 1...3600) { c.headerTimeout = .seconds(Int64(seconds)) }
            if let seconds = try s.int("body_timeout_seconds", range: 1...3600) { c.bodyTimeout = .seconds(Int64(seconds)) }
            c.minBodyBytesPerSecond = try s.int("min_body_bytes_per_second", range: 1...(1 << 30)) ?? c.minBodyBytesPerSecond
            if let seconds = try s.int("idle_timeout_seconds", range: 1...86_400) { c.idleTimeout = .seconds(Int64(seconds)) }
            config.limits.connections = c
        }
        root.collect { () throws(ConfigError) in
            guard let s = try root.section("admin") else { return }
            let token = try s.string("token"), tokenFile = try s.string("token_file")
            switch (token, tokenFile) {
            case (let token?, nil):
                guard token.count >= 16 else { throw s.error("token", "use at least 16 characters") }
                config.adminToken = .inline(token)
            case (nil, let path?):
                config.adminToken = .file(path: path, createIfMissing: false)
            case (nil, nil):
                break
            case (.some, .some):
                throw s.error("token", "set token or token_file, not both")
            }
            if let path = try s.string("tokens_file") {
                config.operatorTokenFile = path
                // Named tokens alone: no unnamed one is made in the data directory.
                if token == nil && tokenFile == nil { config.adminToken = .none }
            }
        }
        root.collect { () throws(ConfigError) in
            guard let s = try root.section("gateway_auth") else { return }
            guard let path = try s.string("token_file") else { throw s.error("token_file", "required: the file of GATEWAY_ID TOKEN lines") }
            config.gatewayTokenFile = path
        }
        root.collect { () throws(ConfigError) in
            guard let s = try root.section("tls") else { return }
            guard let certificate = try s.readableFile("cert_file") else { throw s.error("cert_file", "required: the aggregator's certificate (PEM)") }
            guard let key = try s.readableFile("key_file") else { throw s.error("key_file", "required: the key of cert_file (PEM)") }
            var tls = ServerTLS(certificateFile: certificate, keyFile: key, clientCAFile: try s.readableFile("client_ca_file"))
            if let mode = try s.choice("client_certificates", of: ServerTLS.ClientCertificates.self) {
                guard tls.clientCAFile != nil else { throw s.error("client_certificates", "needs client_ca_file, the CA that signs gateway certificates") }
                tls.clientCertificates = mode
            }
            config.tls = tls
        }
        root.collect { () throws(ConfigError) in
            guard let s = try root.section("audit") else { return }
            config.auditDirectory = try s.string("dir")
            config.auditRetentionDays = try s.int("retention_days", range: 1...36_500) ?? config.auditRetentionDays
            if let bytes = try s.bytes("max_bytes") {
                guard bytes >= 1 << 20 else { throw s.error("max_bytes", "at least 1 MiB") }
                config.auditMaxBytes = bytes
            }
        }
    }

    /// The `clickhouse:` section: credentials (used where the sink URL has none) and how to
    /// insert.
    mutating func applyClickHouseSection(_ s: ConfigSection) throws(ConfigError) {
        let user = try s.string("user")
        var password = try s.string("password")
        if try s.string("password_file") != nil {
            guard password == nil else { throw s.error("password_file", "set password or password_file, not both") }
            password = try s.secret("password_file", .line)
        }
        if let seconds = try s.int("timeout_seconds", range: 1...3600) { clickHouse.timeout = .seconds(seconds) }
        clickHouse.maxInsertBatches = try s.int("max_insert_batches", range: 1...100_000) ?? clickHouse.maxInsertBatches
        clickHouse.maxInsertReadings = try s.int("max_insert_readings", range: 1...100_000_000) ?? clickHouse.maxInsertReadings
        if let caFile = try s.readableFile("ca_file") { clickHouse.caFile = caFile }
        clickHouse.insertQuorum = try s.int("insert_quorum", range: 0...16) ?? clickHouse.insertQuorum
        if let seconds = try s.int("insert_quorum_timeout_seconds", range: 1...3600) { clickHouse.insertQuorumTimeout = .seconds(seconds) }
        clickHouse.compression = try s.choice("compression", of: ClickHouseSink.InsertCompression.self) ?? clickHouse.compression
        guard case .clickhouse(var endpoint) = sink else { return }
        if let user {
            guard endpoint.user == nil else { throw s.error("user", "the sink URL names a user already; set it in one place") }
            endpoint.user = user
        }
        if let password {
            guard endpoint.password == nil else { throw s.error("password", "the sink URL holds a password already; set it in one place") }
            endpoint.password = password
        }
        sink = .clickhouse(endpoint)
    }
}

/// Which gateways get their own series on `/metrics` (`metrics.per_gateway`). The fleet-level
/// histograms and totals are always there.
public enum PerGatewayMetrics: Sendable, Equatable, CustomStringConvertible {
    /// No per-gateway series.
    case none
    /// Every gateway: 11 series each.
    case all
    /// The N most in trouble: stale first, then the most behind, then the largest backlog.
    case top(Int)

    public init?(_ text: String) {
        switch text {
        case "none": self = .none
        case "all": self = .all
        default:
            guard text.hasPrefix("top:"), let n = Int(text.dropFirst(4)), (1...1_000_000).contains(n) else { return nil }
            self = .top(n)
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .all: "all"
        case .top(let n): "top:\(n)"
        }
    }
}
