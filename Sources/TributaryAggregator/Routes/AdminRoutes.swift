import Hummingbird
import TributaryAdminAPI
import TributaryCore
import TributaryRuntime
import TributarySinks
import TributaryWire

/// The operator endpoints: the fleet view, one gateway's detail, and `/metrics`, behind
/// `OperatorMiddleware` (the token, and the audit line).
struct AdminRoutes {
    let config: AggregatorConfig
    let sink: any Sink
    let registry: FleetRegistry
    let ingestor: BatchIngestor
    let connectionLimits: ConnectionLimits
    let readiness: SinkReadiness
    let audit: AuditLog
    let token: AdminToken

    var collection: RouteCollection<AggregatorRequestContext> {
        let routes = RouteCollection(context: AggregatorRequestContext.self)
            .add(middleware: OperatorMiddleware(token: token, audit: audit))
        routes.get(RouterPath(WireProtocol.fleetPath)) { request, _ -> Response in
            let query: FleetQuery
            do {
                query = try FleetQuery(parameters: request.uri.queryParameters.map { (String($0.key), String($0.value)) })
            } catch {
                return Response.problem(.badRequest, "\(error)")
            }
            return try Response.json(try await fleetView(query))
        }
        // The totals alone: what `tributaryctl status` and `watch` show, without a row per gateway.
        routes.get(RouterPath(WireProtocol.fleetPath + "/summary")) { _, _ -> Response in
            try Response.json(try await fleetView(FleetQuery(limit: 0)))
        }
        routes.get(RouterPath(WireProtocol.gatewaysPath + "/:id")) { _, context -> Response in
            let id = context.parameters.get("id") ?? ""
            guard let detail = try await registry.gateway(id, nowMs: WallClock.nowMs(), staleAfterSeconds: config.staleAfterSeconds) else {
                return Response.problem(.notFound, "no gateway '\(id.prefix(64))' has reported to this aggregator")
            }
            return try Response.json(detail)
        }
        routes.get("/metrics") { _, _ -> Response in
            // Up means both: the last write succeeded and the sink answers now.
            let sinkUp = ingestor.admissionStats.consecutiveSinkFailures == 0 ? await readiness.problem() == nil : false
            var text = ingestor.metrics.render(try await fleetView(), sinkUp: sinkUp, auditUnwritten: audit.unwrittenEvents,
                                                 perGateway: config.metricsPerGateway)
            var p = PrometheusText()
            if let relay = ingestor.relay { relay.metrics(into: &p, nowMs: WallClock.nowMs()) }
            ProcessMetrics.render(into: &p)
            text += p.text
            return Response(status: .ok, headers: [.contentType: PrometheusText.contentType],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return routes
    }

    /// The fleet as `GET /v1/fleet` shows it: the registry's gateways and the aggregator's own
    /// admission and connection counts. Asked with a query, one page of the gateways it keeps,
    /// with the whole fleet's totals.
    func fleetView(_ query: FleetQuery = FleetQuery()) async throws -> FleetView {
        let now = WallClock.nowMs()
        let all = try await registry.gateways(nowMs: now, staleAfterSeconds: config.staleAfterSeconds)
        var gateways = all
        var summary: FleetTotals?
        var matched: Int?
        if !query.isEverything {
            let kept = query.matching(all, nowMs: now)
            matched = kept.count
            gateways = query.page(kept)
            summary = FleetTotals(gateways: all, nowMs: now)
        }
        var admission = ingestor.admissionStats
        let connections = connectionLimits.counts
        admission.openConnections = connections.openConnections
        admission.connectionsRefused = connections.connectionsRefused
        admission.addressBusyRefusals = connections.addressBusyRefusals
        admission.headTimeouts = connections.headTimeouts
        admission.bodyTimeouts = connections.bodyTimeouts
        var view = FleetView(generatedAtMs: now, staleAfterSeconds: config.staleAfterSeconds, sink: sink.description,
                             admission: admission, sinkWrites: sink.writeStats, gateways: gateways,
                             refusedSenders: ingestor.refusedSenders.recent(nowMs: now, withinMs: Int64(config.staleAfterSeconds) * 1000))
        view.summary = summary
        view.matched = matched
        view.registryWriteError = registry.lastWriteError
        return view
    }
}
