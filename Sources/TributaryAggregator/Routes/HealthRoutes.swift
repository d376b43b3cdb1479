import Hummingbird

/// Probes for service managers and load balancers: no token, nothing about the fleet.
struct HealthRoutes {
    let readiness: SinkReadiness

    var collection: RouteCollection<AggregatorRequestContext> {
        let routes = RouteCollection(context: AggregatorRequestContext.self)
        routes.get("/healthz") { _, _ in "ok\n" }
        routes.get("/readyz") { _, _ -> Response in
            if let problem = await readiness.problem() {
                // The kind of trouble only: the details (hosts, errors) are for operators.
                let kind = problem == "shutting down" ? "shutting down"
                    : problem.hasPrefix("the last sink writes failed") ? "the last sink writes failed" : "the sink does not answer"
                return Response(status: .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: "not ready: \(kind) (details in the aggregator's log and tributaryctl status)\n")))
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
        }
        return routes
    }
}
