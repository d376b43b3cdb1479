import Hummingbird

/// Probes for service managers and load balancers: no token, nothing about the fleet.
struct HealthRoutes {
    let readiness: SinkReadiness

    var collection: RouteCollection<AggregatorRequestContext> {
        let routes = RouteCollection(context: AggregatorRequestContext.self)
        routes.get("/healthz") { _, _ in "ok\n" }
        routes.get("/readyz") { _, _ -> Response in
            guard await readiness.problem() == nil else {
                return Response(status: .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: "not ready: the sink does not answer (details in the aggregator's log and tributaryctl status)\n")))
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
        }
        return routes
    }
}
