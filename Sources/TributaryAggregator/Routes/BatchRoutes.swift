import HTTPTypes
import Hummingbird
import NIOCore
import TributaryCore
import TributaryRuntime
import TributaryWire

/// `POST /v1/batches`: who is sending (certificate or token), admission before the body is
/// read, then the ingestor; every answer is an ack and one audit line. The audit line is
/// written here, not by a middleware, because it tells what the ingestor made of the batch
/// (its identity, readings and the gateway it claimed), which only this handler sees.
struct BatchRoutes {
    let config: AggregatorConfig
    let ingestor: BatchIngestor
    let gatewayTokens: NamedTokens?
    let connectionLimits: ConnectionLimits
    let audit: AuditLog

    var collection: RouteCollection<AggregatorRequestContext> {
        let routes = RouteCollection(context: AggregatorRequestContext.self)
        routes.post(RouterPath(WireProtocol.batchesPath)) { request, context in
            await receive(request, context)
        }
        return routes
    }

    func receive(_ request: Request, _ context: AggregatorRequestContext) async -> Response {
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
        var result: BatchIngestor.Response
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
        if result.outcome == .unauthorized {
            // Refused before its body was read, the request's claim is the agent's header.
            if result.claimedGateway.isEmpty { result.claimedGateway = request.headers[values: HTTPField.Name(WireProtocol.gatewayHeader)!].first ?? "" }
            ingestor.refusedSenders.record(claimed: result.claimedGateway, reason: result.ack.reason, peer: address)
        } else if let authenticated, [.accepted, .duplicate, .heartbeat].contains(result.outcome) {
            ingestor.refusedSenders.forget(authenticated)
        }
        audit.record(Self.auditEvent(result, authenticated: authenticated, credentialsRequired: credentials != .open, peer: address))
        var headers: HTTPFields = [.contentType: WireProtocol.protobufContentType]
        if result.httpStatus == 401 { headers[.wwwAuthenticate] = "Bearer" }
        if let retryAfter = result.retryAfterSeconds { headers[.retryAfter] = String(retryAfter) }
        let bytes = (try? result.ack.serializedBytes()) ?? [UInt8]()
        return Response(status: .init(code: result.httpStatus), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// What the audit log says of a request to /v1/batches.
    static func auditEvent(_ result: BatchIngestor.Response, authenticated: String?, credentialsRequired: Bool, peer: String? = nil) -> AuditLog.Event {
        let actor = authenticated.map { "gateway:\($0)" }
            ?? (credentialsRequired || result.claimedGateway.isEmpty ? "unauthenticated" : "claimed:\(Printable.clean(result.claimedGateway, maxLength: 128))")
        let ack = result.ack
        let batch = ack.hasBatchID ? "\(ack.batchID.identity)" : nil
        // Who it said it was, when that was not proven: refused senders are found by it.
        let claimed = authenticated == nil && !result.claimedGateway.isEmpty ? Printable.clean(result.claimedGateway, maxLength: 128) : nil
        return .init(kind: "batch", actor: actor, action: "POST \(WireProtocol.batchesPath)", httpStatus: result.httpStatus, outcome: result.outcome.rawValue,
                     batch: batch, readings: ack.readingCount > 0 ? Int(ack.readingCount) : nil, reason: ack.reason, peer: peer, claimed: claimed)
    }
}
