import Foundation
import Hummingbird
import Logging
import NIOCore
import HummingbirdTLS
import HummingbirdCore
import NIOSSL
import ServiceLifecycle
import Synchronization
import TributaryAdminAPI
import TributaryCore
import TributaryRuntime
import TributarySQLite
import TributarySinks
import TributaryWire

/// The aggregator, assembled: sink, fleet registry, and the HTTP server. A Service: `run()`
/// checks the sink, serves until a graceful shutdown (SIGTERM in the executable: stop
/// accepting, let requests finish), then closes the sink, the registry and the audit log,
/// also when it fails. An aggregator made but never run must be `close()`d.
public final class Aggregator: Service, Sendable {
    public let config: AggregatorConfig
    public let sink: any Sink
    public let registry: FleetRegistry
    public let ingestor: BatchIngestor
    private let application: Application<RouterResponder<AggregatorRequestContext>>
    /// The routes, for route-level tests (`HummingbirdTesting`) without a server.
    let routes: RouterResponder<AggregatorRequestContext>
    private let boundPort: BoundPort
    let logger: Logger
    let audit: AuditLog
    private let readiness: SinkReadiness
    private let gatewayTokens: NamedTokens?
    private let operatorTokens: NamedTokens?
    private let closed = Mutex(false)
    /// The server's TLS context, which a reload replaces; nil without `tls`.
    let tlsContext: ReloadableTLSContext?
    let connectionLimits: ConnectionLimits
    /// The configuration in force: the one started with, or the last reload's.
    let live: Mutex<AggregatorConfig>
    /// Where SIGHUP reads the configuration again; nil: SIGHUP is only logged.
    let reloadSource: AggregatorReloadSource?
    /// On a relay: its custody of what it has not forwarded, and the loop that forwards it.
    public let spool: RelaySpool?
    public let forwarder: UpstreamForwarder?

    public init(config: AggregatorConfig, logger: Logger, reloadingFrom reloadSource: AggregatorReloadSource? = nil) throws {
        self.config = config
        live = Mutex(config)
        self.reloadSource = reloadSource
        guard config.sinkIsAllowed else {
            throw AggregatorStartError(message: "the sink \(config.sink) is not in sink_allow_list; the aggregator writes only to sinks named there")
        }
        do {
            // Mode 0700 when made here; an existing one others can enter is only reported.
            if try PrivateFiles.makeDirectory(config.dataDirectory) {
                logger.warning("data_dir is open to other users; its files are made 0600, but chmod 700 (or 750) it", metadata: ["dir": "\(config.dataDirectory)"])
            }
        } catch {
            throw AggregatorStartError(message: "cannot create data_dir \(config.dataDirectory): \(error.localizedDescription)")
        }
        sink = config.keepsLocalCopy ? try config.sink.makeSink(clickHouse: config.clickHouse, logger: logger) : ForwardOnlySink()
        self.logger = logger
        let registry = try FleetRegistry(path: config.dataDirectory + "/registry.sqlite")
        self.registry = registry
        var custody: RelayCustody?
        if let upstream = config.upstream {
            let spool: RelaySpool
            do {
                spool = try RelaySpool(path: config.spoolPath)
            } catch {
                throw AggregatorStartError(message: "cannot open the relay spool \(config.spoolPath): \(error)")
            }
            let forwarder = try UpstreamForwarder(spool: spool, settings: upstream, relayID: config.relayID,
                                                  gatewayCount: { registry.gatewayCount }, logger: logger)
            self.spool = spool
            self.forwarder = forwarder
            custody = RelayCustody(spool: spool, config: config, forwarder: forwarder)
            if spool.requeuedAtStart > 0 {
                logger.warning("batches the upstream refused last run are tried again", metadata: [
                    "batches": "\(spool.requeuedAtStart)", "spool": "\(config.spoolPath)"])
            }
            logger.info("relay: batches are kept in the spool and forwarded upstream", metadata: [
                "relay_id": "\(config.relayID)", "upstream": "\(upstream.urls.joined(separator: ", "))", "spool": "\(config.spoolPath)",
                "spool_batches": "\(spool.snapshot.batches)", "local_copy": "\(config.keepsLocalCopy ? "\(sink)" : "none")",
            ])
        } else {
            spool = nil
            forwarder = nil
        }
        ingestor = BatchIngestor(sink: sink, registry: registry, limits: config.limits, relay: custody,
                                 trustedRelays: config.trustedRelays, logger: logger)
        let unnamedToken = try AdminToken.resolve(config.adminToken)
        let operatorTokens = try config.operatorTokenFile.map { path throws(AggregatorStartError) in
            try NamedTokens(path: path, key: "admin.tokens_file", holder: .operator, reserved: unnamedToken.reserved, logger: logger)
        }
        let token = unnamedToken.adding(named: operatorTokens)
        logger.info("operator token for the admin API and /metrics", metadata: [
            "from": "\(token.origin)", "named_operators": "\(operatorTokens.map { "\($0.count) in \($0.path)" } ?? "none")",
        ])
        let gatewayTokens = try config.gatewayTokenFile.map { path throws(AggregatorStartError) in try NamedTokens(path: path, logger: logger) }
        self.gatewayTokens = gatewayTokens
        self.operatorTokens = operatorTokens
        if let gatewayTokens {
            logger.info("batches need their gateway's token", metadata: ["file": "\(gatewayTokens.path)", "gateways": "\(gatewayTokens.count)"])
        }
        let tls = try config.tls.map { tls throws(AggregatorStartError) in try tls.serverConfiguration() }
        if let settings = config.tls {
            logger.info("HTTPS", metadata: [
                "cert_file": "\(settings.certificateFile)",
                "client_certificates": "\(settings.clientCAFile.map { "\(settings.clientCertificates.rawValue), signed by \($0)" } ?? "not asked for")",
            ])
        }
        if gatewayTokens == nil && config.tls?.clientCAFile == nil {
            logger.warning("neither gateway_auth.token_file nor tls.client_ca_file: batches are taken from anyone who can reach this port, for any gateway")
        } else if config.tls == nil {
            logger.warning("no tls section: gateway tokens and readings cross the network in clear")
        }
        let boundPort = BoundPort()
        self.boundPort = boundPort
        let sink = self.sink
        let readiness = SinkReadiness(sink: sink, logger: logger, recentWriteFailure: { [ingestor] in ingestor.recentWriteFailure() })
        self.readiness = readiness
        let audit = try AuditLog(directory: config.auditDirectory ?? config.dataDirectory + "/audit",
                                 retentionDays: config.auditRetentionDays, maxBytes: config.auditMaxBytes, logger: logger)
        self.audit = audit
        logger.info("audit log", metadata: ["dir": "\(audit.directory)", "retention_days": "\(audit.retentionDays)"])
        var connectionSettings = config.limits.connections
        connectionSettings.admissionBatches = config.limits.maxInFlightBatches
        connectionSettings.admissionBytes = config.limits.maxInFlightBytes
        let connectionLimits = ConnectionLimits(settings: connectionSettings, logger: logger)
        Self.raiseOpenFileLimit(toServe: config.limits.connections.maxConnections, logger: logger)
        let router = Self.router(config: config, sink: sink, registry: registry, ingestor: ingestor, token: token,
                                 gatewayTokens: gatewayTokens, audit: audit, readiness: readiness, connectionLimits: connectionLimits)
        routes = router.buildResponder()
        // Built here, where the error can name the section; a reload replaces it.
        let tlsContext = try tls.map { tls throws(AggregatorStartError) in
            do { return try ReloadableTLSContext(tls) } catch { throw AggregatorStartError(message: "tls: \(error)") }
        }
        self.tlsContext = tlsContext
        self.connectionLimits = connectionLimits
        application = Application(
            router: router,
            server: Self.server(tls: tlsContext, limits: connectionLimits, maxBodyBytes: config.limits.maxBodyBytes),
            configuration: .init(address: .hostname(config.listenHost, port: config.listenPort), serverName: "tributary-aggregator"),
            onServerRunning: { channel in
                boundPort.set(channel.localAddress?.port ?? 0)
                logger.info("aggregator listening", metadata: [
                    "address": "\(config.listenHost):\(channel.localAddress?.port ?? 0)", "sink": "\(sink)",
                ])
            },
            logger: logger)
    }

    /// Hummingbird's HTTP1 server, guarded (see `GuardedChannels.swift`): connections counted
    /// per address, each request's head and body timed, idle connections closed.
    static func server(tls: ReloadableTLSContext?, limits: ConnectionLimits, maxBodyBytes: Int) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            let http = HTTP1Channel(responder: responder, configuration: .init(
                additionalChannelHandlers: [BodyDeadlineHandler(limits: limits, maxBodyBytes: maxBodyBytes)],
                idleTimeout: limits.settings.idleTimeout))
            let timed = GuardedChannel(base: http) { HeadTimingHandler(limits: limits) }
            guard let tls else { return GuardedChannel(base: timed) { AddressLimitHandler(limits: limits) } }
            return GuardedChannel(base: ReloadableTLSChannel(base: timed, context: tls)) { AddressLimitHandler(limits: limits) }
        }
    }

    /// Each connection is a file descriptor: the soft limit is raised to the hard one, and a
    /// warning says when even that is below what `limits.max_connections` needs.
    static func raiseOpenFileLimit(toServe connections: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let needed = UInt64(connections) + 256
        if limit.rlim_cur < needed {
            logger.warning("the open-file limit is below what limits.max_connections needs; raise LimitNOFILE or lower max_connections", metadata: [
                "open_file_limit": "\(limit.rlim_cur)", "max_connections": "\(connections)",
            ])
        }
    }

    /// Checks the sink before serving. A sink that is unreachable is only logged: the
    /// aggregator serves anyway and answers 503 until it is back, so services can start in any
    /// order. A sink that refuses the configuration (e.g. wrong credentials) is an error.
    public func prepareSink() async throws {
        do {
            try await sink.prepare()
        } catch where error.kind == .misconfigured {
            throw AggregatorStartError(message: error.description)
        } catch {
            logger.warning("sink not ready; batches are answered 503 until it is", metadata: ["sink": "\(sink)", "error": "\(error)"])
        }
    }

    public func run() async throws {
        // The token file is watched, not only looked at when a request comes: a reload (or a
        // broken edit) is in the log when it happens.
        let tokenFiles = [gatewayTokens, operatorTokens].compactMap { $0 }
        let watcher = tokenFiles.isEmpty ? nil : Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                for tokens in tokenFiles { tokens.refresh() }
            }
        }
        defer { watcher?.cancel() }
        let hangups = Task { await reloadOnHangup() }
        defer { hangups.cancel() }
        let forwarding = forwarder.map { forwarder in Task { await forwarder.run() } }
        // The forwarder stops before the spool closes: what it was sending stays spooled.
        func stopForwarding() async {
            forwarding?.cancel()
            await forwarding?.value
        }
        do {
            try await prepareSink()
            let readiness = self.readiness
            try await withGracefulShutdownHandler {
                try await application.run()
            } onGracefulShutdown: {
                Task { await readiness.shutDown() }
            }
        } catch {
            await stopForwarding()
            await close()
            throw error
        }
        await stopForwarding()
        await close()
    }

    /// The port the server listens on, once it runs (useful with port 0).
    public func port() async -> Int { await boundPort.wait() }

    /// Flushes the audit log and closes the sink and the registry; `run()` does it on its way
    /// out. Once only: a second call does nothing.
    public func close() async {
        guard closed.withLock({ wasClosed in defer { wasClosed = true }; return !wasClosed }) else { return }
        audit.flush()
        await sink.close()
        registry.close()
        await forwarder?.shutdown()
        spool?.close()
    }

    /// The routes, one collection per kind of client: gateways (batches), operators (the admin
    /// API and metrics, behind the operator token and the audit line), and probes (health).
    static func router(config: AggregatorConfig, sink: any Sink, registry: FleetRegistry, ingestor: BatchIngestor,
                       token: AdminToken, gatewayTokens: NamedTokens?, audit: AuditLog, readiness: SinkReadiness,
                       connectionLimits: ConnectionLimits) -> Router<AggregatorRequestContext> {
        let router = Router(context: AggregatorRequestContext.self)
        router.addRoutes(BatchRoutes(config: config, ingestor: ingestor, gatewayTokens: gatewayTokens,
                                     connectionLimits: connectionLimits, audit: audit).collection)
        router.addRoutes(AdminRoutes(config: config, sink: sink, registry: registry, ingestor: ingestor, connectionLimits: connectionLimits,
                                     readiness: readiness, audit: audit, token: token).collection)
        router.addRoutes(HealthRoutes(readiness: readiness).collection)
        return router
    }
}

public struct AggregatorStartError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
