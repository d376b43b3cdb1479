import Foundation
import Hummingbird
import Logging
import NIOCore
import HummingbirdTLS
import NIOSSL
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryWire

/// The aggregator, assembled: sink, fleet registry, and the HTTP server.
/// `service` runs it in a ServiceGroup; SIGTERM stops accepting and lets requests finish.
public final class Aggregator: Sendable {
    public let config: AggregatorConfig
    public let sink: any Sink
    public let registry: FleetRegistry
    public let ingestor: BatchIngestor
    private let application: Application<RouterResponder<AggregatorRequestContext>>
    private let boundPort: BoundPort
    private let logger: Logger

    public init(config: AggregatorConfig, logger: Logger) throws {
        self.config = config
        guard config.sinkIsAllowed else {
            throw AggregatorStartError(message: "the sink \(config.sink) is not in sink_allow_list; the aggregator writes only to sinks named there")
        }
        do {
            try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw AggregatorStartError(message: "cannot create data_dir \(config.dataDirectory): \(error.localizedDescription)")
        }
        switch config.sink {
        case .sqlite(let path):
            sink = try SQLiteSink(path: path)
        case .clickhouse(let endpoint):
            sink = ClickHouseSink(endpoint: endpoint, settings: config.clickHouse, logger: logger)
        }
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
                                 retentionDays: config.auditRetentionDays, logger: logger)
        logger.info("audit log", metadata: ["dir": "\(audit.directory)", "retention_days": "\(audit.retentionDays)"])
        let router = Self.router(config: config, sink: sink, registry: registry, ingestor: ingestor, token: token,
                                 gatewayTokens: gatewayTokens, audit: audit, readiness: readiness)
        application = Application(
            router: router,
            server: try tls.map { configuration throws(AggregatorStartError) in
                do { return try .tls(.http1(), tlsConfiguration: configuration) } catch {
                    throw AggregatorStartError(message: "tls: \(error)")
                }
            } ?? .http1(),
            configuration: .init(address: .hostname(config.listenHost, port: config.listenPort), serverName: "tributary-aggregator"),
            onServerRunning: { channel in
                boundPort.set(channel.localAddress?.port ?? 0)
                logger.info("aggregator listening", metadata: [
                    "address": "\(config.listenHost):\(channel.localAddress?.port ?? 0)", "sink": "\(sink)",
                ])
            },
            logger: logger)
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

    /// The HTTP server as a Service.
    public var service: any Service { application }

    /// The port the server listens on, once it runs (useful with port 0).
    public func port() async -> Int { await boundPort.wait() }

    public func shutdown() async {
        await sink.close()
        registry.close()
    }

    static func router(config: AggregatorConfig, sink: any Sink, registry: FleetRegistry, ingestor: BatchIngestor,
                       token: AdminToken, gatewayTokens: GatewayTokens?, audit: AuditLog, readiness: SinkReadiness) -> Router<AggregatorRequestContext> {
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
            let result: BatchIngestor.Response = if let refused {
                refused
            } else if declared > config.limits.maxBodyBytes {
                ingestor.refusal(413, reason: "body of \(declared) bytes exceeds \(config.limits.maxBodyBytes)")
            } else {
                await ingestor.admitted(declaredBytes: declared) {
                    var request = request
                    let body: ByteBuffer
                    do {
                        body = try await request.collectBody(upTo: config.limits.maxBodyBytes)
                    } catch {
                        return ingestor.refusal(413, reason: "body exceeds \(config.limits.maxBodyBytes) bytes")
                    }
                    return await ingestor.process(
                        body: Array(buffer: body), contentType: request.headers[.contentType],
                        contentEncoding: request.headers[.contentEncoding], receivedAtMs: receivedAtMs, authenticatedGateway: authenticated)
                }
            }
            audit.record(Self.auditEvent(result, authenticated: authenticated, credentialsRequired: credentials != .open))
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
            return FleetView(generatedAtMs: now, staleAfterSeconds: config.staleAfterSeconds, sink: sink.description,
                             admission: ingestor.admissionStats, sinkWrites: sink.writeStats, gateways: gateways)
        }
        // Operator endpoints: the token first, so nothing about the fleet leaks without it.
        router.get(RouterPath(WireProtocol.fleetPath)) { request, _ -> Response in
            try await Self.operatorRequest(request, token, audit) { try Self.json(try await fleetView()) }
        }
        router.get(RouterPath(WireProtocol.gatewaysPath + "/:id")) { request, context -> Response in
            try await Self.operatorRequest(request, token, audit) {
                let id = context.parameters.get("id") ?? ""
                guard let detail = try await registry.gateway(id, nowMs: WallClock.nowMs(), staleAfterSeconds: config.staleAfterSeconds) else {
                    return Self.problem(.notFound, "no gateway '\(id.prefix(64))' has reported to this aggregator")
                }
                return try Self.json(detail)
            }
        }
        router.get("/metrics") { request, _ -> Response in
            try await Self.operatorRequest(request, token, audit) {
                // Up means both: the last write succeeded and the sink answers now.
                let sinkUp = ingestor.admissionStats.consecutiveSinkFailures == 0 ? await readiness.problem() == nil : false
                let text = ingestor.metrics.render(try await fleetView(), sinkUp: sinkUp)
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
    static func operatorRequest(_ request: Request, _ token: AdminToken, _ audit: AuditLog,
                                _ body: () async throws -> Response) async throws -> Response {
        let action = "GET \(Printable.clean(request.uri.path, maxLength: 200))"
        guard token.allows(authorization: request.headers[.authorization]) else {
            let refusal = unauthorized(request)
            audit.record(.init(kind: "operator", actor: "unauthenticated", action: action, httpStatus: 401, outcome: "refused",
                               reason: request.headers[.authorization] == nil ? "no operator token" : "wrong operator token"))
            return refusal
        }
        do {
            let response = try await body()
            let code = response.status.code
            audit.record(.init(kind: "operator", actor: "operator", action: action, httpStatus: code, outcome: code < 400 ? "answered" : "failed"))
            return response
        } catch {
            audit.record(.init(kind: "operator", actor: "operator", action: action, httpStatus: 500, outcome: "failed", reason: "\(error)"))
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
    static func auditEvent(_ result: BatchIngestor.Response, authenticated: String?, credentialsRequired: Bool) -> AuditLog.Event {
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
        return .init(kind: "batch", actor: actor, action: "POST \(WireProtocol.batchesPath)", httpStatus: result.httpStatus, outcome: outcome,
                     batch: batch, readings: ack.readingCount > 0 ? Int(ack.readingCount) : nil, reason: ack.reason)
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
