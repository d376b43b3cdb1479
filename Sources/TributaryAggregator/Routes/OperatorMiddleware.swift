import Hummingbird
import TributaryCore
import TributaryWire

/// In front of every operator endpoint (the admin API and `/metrics`): the operator token
/// first, so nothing about the fleet leaks without it, and one audit line per request, whatever
/// the answer.
struct OperatorMiddleware: RouterMiddleware {
    typealias Context = AggregatorRequestContext

    let token: AdminToken
    let audit: AuditLog

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let action = "GET \(Printable.clean(request.uri.path, maxLength: 200))"
        let peer = ConnectionLimits.address(of: context.channel)
        guard let holder = token.holder(authorization: request.headers[.authorization]) else {
            audit.record(.init(kind: "operator", actor: "unauthenticated", action: action, httpStatus: 401, outcome: RequestOutcome.unauthorized.rawValue,
                               reason: request.headers[.authorization] == nil ? "no operator token" : "wrong operator token", peer: peer))
            return Self.unauthorized(request)
        }
        let actor = holder.auditActor
        do {
            let response = try await next(request, context)
            let code = response.status.code
            audit.record(.init(kind: "operator", actor: actor, action: action, httpStatus: code, outcome: code < 400 ? "answered" : "failed",
                               peer: peer))
            return response
        } catch {
            audit.record(.init(kind: "operator", actor: actor, action: action, httpStatus: 500, outcome: "failed", reason: "\(error)", peer: peer))
            throw error
        }
    }

    /// The 401 for a request without the operator token.
    static func unauthorized(_ request: Request) -> Response {
        let reason = request.headers[.authorization] == nil
            ? "the admin API needs the operator token: Authorization: Bearer TOKEN (tributaryctl --token or --token-file)"
            : "the operator token is wrong"
        var response = Response.problem(.unauthorized, reason)
        response.headers[.wwwAuthenticate] = "Bearer realm=\"tributary\""
        return response
    }
}
