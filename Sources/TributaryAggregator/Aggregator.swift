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
import TributarySQLite
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
    private let logger: Logger
    private let audit: AuditLog
    private let closed = Mutex(false)

    public init(config: AggregatorConfig, logger: Logger) throws {
        self.config = config
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
        sink = try config.sink.makeSink(config: config, logger: logger)
        self.logger = logger
        registry = try FleetRegistry(path: config.dataDirectory + "/registry.sqlite")
        ingestor = BatchIngestor(sink: sink, registry: registry, limits: config.limits, logger: logger)
        let token = try AdminToken.resolve(config.adminToken)
        logger.info("operator token for the admin API and /metrics", metadata: ["from": "\(token.origin)"])
        let gatewayTokens = try config.gatewayTokenFile.map { path throws(AggregatorStartError) in try GatewayTokens(path: path, logger: logger) }
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
        let readiness = SinkReadiness(sink: sink, logger: logger)
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
        if let tls {
            // Checked here, where the error can name the section; the server builds it again.
            do { _ = try NIOSSLContext(configuration: tls) } catch { throw AggregatorStartError(message: "tls: \(error)") }
        }
        application = Application(
            router: router,
            server: Self.server(tls: tls, limits: connectionLimits, maxBodyBytes: config.limits.maxBodyBytes),
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
    static func server(tls: TLSConfiguration?, limits: ConnectionLimits, maxBodyBytes: Int) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            let http = HTTP1Channel(responder: responder, configuration: .init(
                additionalChannelHandlers: [BodyDeadlineHandler(limits: limits, maxBodyBytes: maxBodyBytes)],
                idleTimeout: limits.settings.idleTimeout))
            let timed = GuardedChannel(base: http) { HeadTimingHandler(limits: limits) }
            guard let tls else { return GuardedChannel(base: timed) { AddressLimitHandler(limits: limits) } }
            return GuardedChannel(base: try TLSChannel(timed, tlsConfiguration: tls)) { AddressLimitHandler(limits: limits) }
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
        do {
            try await prepareSink()
            try await application.run()
        } catch {
            await close()
            throw error
        }
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
    }

    static func router(config: AggregatorConfig, sink: any Sink, registry: FleetRegistry, ingestor: BatchIngestor,
                       token: AdminToken, gatewayTokens: GatewayTokens?, audit: AuditLog, readiness: SinkReadiness,
                       connectionLimits: ConnectionLimits) -> Router<AggregatorRequestContext> {
        let router = Router(context: AggregatorRequestContext.self)
        router.post(RouterPath(WireProtocol.batchesPath)) { request, context -> Response in
            let receivedAtMs = WallClock.nowMs()
            // Who is talking, before anything else is read (nil: nothing is configured to say).
            let certificatesConfigured = config.tls?.clientCAFile != nil
            let certificate = certificatesConfigured ? await ClientCertificate.identity(on: context.channel) : nil
            let credentials = BatchCredentials.decide(certificate: certificate,
                                                      token: gatewayTokens?.authenticate(authorization: request.headers[.authorization]),
                                                      certificatesConfigured: certificatesConfigured)
            var authenticated: String?
            var refused: BatchIngestor.Response?
            switch credentials {
            case .gateway(let id, _): authenticated = id
            case .refused(let status, let reason): refused = ingestor.refusal(status, reason: reason)
            case .open: break
            }
            // Admitted before the body is read, by its declared length: memory stays bounded
            // by max_in_flight_bytes however many agents send at once.
            let declared = request.headers[.contentLength].flatMap(Int.init) ?? config.limits.maxBodyBytes
            // One address may not take every place in admission control (a few slow or stuck
            // clients, or one gateway sending too much at once).
            let address = ConnectionLimits.address(of: context.channel)
            let result: BatchIngestor.Response
            if let refused {
                result = refused
            } else if declared > config.limits.maxBodyBytes {
                result = ingestor.refusal(413, reason: "body of \(declared) bytes exceeds \(config.limits.maxBodyBytes)")
            } else if !connectionLimits.admit(from: address, bytes: declared) {
                result = ingestor.busy(reason: "too much in flight from \(address) (limits.max_in_flight_per_address, max_in_flight_bytes_per_address)")
            } else {
                defer { connectionLimits.finish(from: address, bytes: declared) }
                result = await ingestor.admitted(declaredBytes: declared) {
                    var request = request
                    let body: ByteBuffer
                    do {
                        body = try await request.collectBody(upTo: config.limits.maxBodyBytes)
                    } catch {
                        // Past the limit, or the connection closed: cut off as too slow, or gone.
                        return context.channel.isActive
                            ? ingestor.refusal(413, reason: "body exceeds \(config.limits.maxBodyBytes) bytes")
                            : ingestor.refusal(408, reason: "the body did not arrive in time, or the connection closed")
                    }
                    return await ingestor.process(
                        body: Array(buffer: body), contentType: request.headers[.contentType],
                        contentEncoding: request.headers[.contentEncoding], receivedAtMs: receivedAtMs, authenticatedGateway: authenticated)
                }
            }
            audit.record(Self.auditEvent(result, authenticated: authenticated, credentialsRequired: credentials != .open, peer: address))
            var headers: HTTPFields = [.contentType: WireProtocol.protobufContentType]
            if result.httpStatus == 401 { headers[.wwwAuthenticate] = "Bearer" }
            if let retryAfter = result.retryAfterSeconds { headers[.retryAfter] = String(retryAfter) }
            let bytes = (try? result.ack.serializedBytes()) ?? [UInt8]()
            return Response(status: .init(code: result.httpStatus), headers: headers,
                            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }

        @Sendable func fleetView() async throws -> FleetView {
            let now = WallClock.nowMs()
            let gateways = try await registry.gateways(nowMs: now, staleAfterSeconds: config.staleAfterSeconds)
            var admission = ingestor.admissionStats
            let connections = connectionLimits.counts
            admission.openConnections = connections.openConnections
            admission.connectionsRefused = connections.connectionsRefused
            admission.addressBusyRefusals = connections.addressBusyRefusals
            admission.headTimeouts = connections.headTimeouts
            admission.bodyTimeouts = connections.bodyTimeouts
            return FleetView(generatedAtMs: now, staleAfterSeconds: config.staleAfterSeconds, sink: sink.description,
                             admission: admission, sinkWrites: sink.writeStats, gateways: gateways)
        }
        // Operator endpoints: the token first, so nothing about the fleet leaks without it.
        router.get(RouterPath(WireProtocol.fleetPath)) { request, context -> Response in
            try await Self.operatorRequest(request, context, token, audit) { try Self.json(try await fleetView()) }
        }
        router.get(RouterPath(WireProtocol.gatewaysPath + "/:id")) { request, context -> Response in
            try await Self.operatorRequest(request, context, token, audit) {
                let id = context.parameters.get("id") ?? ""
                guard let detail = try await registry.gateway(id, nowMs: WallClock.nowMs(), staleAfterSeconds: config.staleAfterSeconds) else {
                    return Self.problem(.notFound, "no gateway '\(id.prefix(64))' has reported to this aggregator")
                }
                return try Self.json(detail)
            }
        }
        router.get("/metrics") { request, context -> Response in
            try await Self.operatorRequest(request, context, token, audit) {
                // Up means both: the last write succeeded and the sink answers now.
                let sinkUp = ingestor.admissionStats.consecutiveSinkFailures == 0 ? await readiness.problem() == nil : false
                let text = ingestor.metrics.render(try await fleetView(), sinkUp: sinkUp, auditUnwritten: audit.unwrittenEvents)
                return Response(status: .ok, headers: [.contentType: PrometheusText.contentType],
                                body: .init(byteBuffer: ByteBuffer(string: text)))
            }
        }
        // Probes for service managers and load balancers: no token, nothing about the fleet.
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            guard await readiness.problem() == nil else {
                return Response(status: .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: "not ready: the sink does not answer (details in the aggregator's log and tributaryctl status)\n")))
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
        }
        return router
    }

    /// An operator endpoint: 401 without the operator token, else `body`; the audit log gets
    /// the answer either way.
    static func operatorRequest(_ request: Request, _ context: AggregatorRequestContext, _ token: AdminToken, _ audit: AuditLog,
                                _ body: () async throws -> Response) async throws -> Response {
        let action = "GET \(Printable.clean(request.uri.path, maxLength: 200))"
        let peer = ConnectionLimits.address(of: context.channel)
        guard token.allows(authorization: request.headers[.authorization]) else {
            let refusal = unauthorized(request)
            audit.record(.init(kind: "operator", actor: "unauthenticated", action: action, httpStatus: 401, outcome: "refused",
                               reason: request.headers[.authorization] == nil ? "no operator token" : "wrong operator token", peer: peer))
            return refusal
        }
        do {
            let response = try await body()
            let code = response.status.code
            audit.record(.init(kind: "operator", actor: "operator", action: action, httpStatus: code, outcome: code < 400 ? "answered" : "failed",
                               peer: peer))
            return response
        } catch {
            audit.record(.init(kind: "operator", actor: "operator", action: action, httpStatus: 500, outcome: "failed", reason: "\(error)", peer: peer))
            throw error
        }
    }

    /// The 401 for a request without the operator token.
    static func unauthorized(_ request: Request) -> Response {
        let reason = request.headers[.authorization] == nil
            ? "the admin API needs the operator token: Authorization: Bearer TOKEN (tributaryctl --token or --token-file)"
            : "the operator token is wrong"
        var response = problem(.unauthorized, reason)
        response.headers[.wwwAuthenticate] = "Bearer realm=\"tributary\""
        return response
    }

    /// What the audit log says of a request to /v1/batches.
    static func auditEvent(_ result: BatchIngestor.Response, authenticated: String?, credentialsRequired: Bool, peer: String? = nil) -> AuditLog.Event {
        let actor = authenticated.map { "gateway:\($0)" }
            ?? (credentialsRequired || result.claimedGateway.isEmpty ? "unauthenticated" : "claimed:\(Printable.clean(result.claimedGateway, maxLength: 128))")
        let ack = result.ack
        let outcome = switch ack.outcome {
        case .accepted: "accepted"
        case .duplicate: "duplicate"
        case .heartbeat: "heartbeat"
        case .retry: "retry"
        case .rejected: "rejected"
        default: "unknown"
        }
        let batch = ack.hasBatchID ? "\(ack.batchID.identity)" : nil
        // Who it said it was, when that was not proven: refused senders are found by it.
        let claimed = authenticated == nil && !result.claimedGateway.isEmpty ? Printable.clean(result.claimedGateway, maxLength: 128) : nil
        return .init(kind: "batch", actor: actor, action: "POST \(WireProtocol.batchesPath)", httpStatus: result.httpStatus, outcome: outcome,
                     batch: batch, readings: ack.readingCount > 0 ? Int(ack.readingCount) : nil, reason: ack.reason, peer: peer, claimed: claimed)
    }

    static func problem(_ status: HTTPResponse.Status, _ reason: String) -> Response {
        let body = (try? JSONEncoder().encode(["error": reason])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func json(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

public struct AggregatorStartError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
