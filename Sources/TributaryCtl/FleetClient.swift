import AsyncHTTPClient
import Foundation
import TributaryAdminAPI
import TributaryConfig
import NIOCore
import NIOSSL
import TributaryCore
import TributaryCrypto
import TributaryRuntime

/// Reads an aggregator's admin API with the operator token.
public struct FleetClient: Sendable {
    public struct FetchError: Error, CustomStringConvertible {
        public let description: String
        /// 401: the token is missing or wrong (exit code 3 for `check`, like any unknown state).
        public var unauthorized = false
        /// 404: the aggregator does not know the path (an older release).
        public var notFound = false
    }

    public let base: String
    public let token: String?
    /// For an https:// aggregator whose certificate the system's CAs do not vouch for.
    public let tls: TLSConfiguration?

    public init(aggregator: String, token: String?, tls: TLSConfiguration? = nil) {
        base = aggregator.hasSuffix("/") ? String(aggregator.dropLast()) : aggregator
        self.token = token
        self.tls = tls
    }

    /// The fleet view, and the JSON as received. With a query, the aggregator sends the page
    /// asked for and the whole fleet's totals (`summary`); one older than paging sends
    /// everything (`matched` nil), and the caller applies the query itself.
    public func fleet(_ query: FleetQuery = FleetQuery()) async throws(FetchError) -> (view: FleetView, json: Data) {
        let data = try await get("/v1/fleet" + query.urlQuery)
        return (try decode(FleetView.self, data), data)
    }

    /// The fleet's totals without a row per gateway; from an aggregator older than the summary
    /// (404), the whole view.
    public func summary() async throws(FetchError) -> (view: FleetView, json: Data) {
        do {
            let data = try await get("/v1/fleet/summary")
            return (try decode(FleetView.self, data), data)
        } catch where error.notFound {
            return try await fleet()
        }
    }

    /// One gateway with its history, and the JSON as received.
    public func gateway(_ id: String) async throws(FetchError) -> (detail: GatewayDetail, json: Data) {
        let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? id
        let data = try await get("/v1/gateways/" + escaped)
        return (try decode(GatewayDetail.self, data), data)
    }

    private func get(_ path: String) async throws(FetchError) -> Data {
        var request = HTTPClientRequest(url: base + path)
        request.tlsConfiguration = tls
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 64 << 20)
            let data = Data(Array(buffer: body))
            guard response.status == .ok else {
                let reason = (try? JSONDecoder().decode([String: String].self, from: data))?["error"] ?? String(buffer: body).prefix(300).description
                var error = FetchError(description: "aggregator \(base) answered \(response.status.code): \(reason)")
                error.unauthorized = response.status.code == 401
                error.notFound = response.status.code == 404
                throw error
            }
            return data
        } catch let error as FetchError {
            throw error
        } catch {
            throw FetchError(description: "cannot reach the aggregator at \(base): " + ConnectionTrouble.describe(error, url: base, settings: .tool))
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws(FetchError) -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw FetchError(description: "aggregator \(base) sent JSON this tributaryctl cannot read: \(error)")
        }
    }

    /// The token from, in order: `--token`, `TRIBUTARY_TOKEN`, `--token-file`, `TRIBUTARY_TOKEN_FILE`, and
    /// on the aggregator's own host the default file it creates, when this user can read it.
    public static func resolveToken(flag: String?, file: String?, environment: [String: String],
                                    defaultFile: String = "/var/lib/tributary-aggregator/admin-token") throws(FetchError) -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let env = environment["TRIBUTARY_TOKEN"], !env.isEmpty { return env }
        // An empty TRIBUTARY_TOKEN_FILE means "no file": not even the aggregator's own.
        if file == nil, environment["TRIBUTARY_TOKEN_FILE"] == "" { return nil }
        if let path = file ?? environment["TRIBUTARY_TOKEN_FILE"] {
            do {
                return try SecretFile.read(path, as: .token(minLength: 1))
            } catch {
                throw FetchError(description: "the token file: \(error.description)")
            }
        }
        // The aggregator's own file, when this user may read it; without it, the admin API's 401 says why.
        return try? SecretFile.read(defaultFile, as: .token(minLength: 1))
    }
}

/// The aggregators `tributaryctl` reads: one, or several that share a sink (`--aggregator A
/// --aggregator B`, or `A,B`), whose views it joins (`FleetMerge`) so a gateway that failed over
/// shows once, with its whole chain.
public struct FleetSources: Sendable {
    public let clients: [FleetClient]

    public init(_ clients: [FleetClient]) {
        precondition(!clients.isEmpty)
        self.clients = clients
    }

    public var description: String { clients.map(\.base).joined(separator: ", ") }

    /// The fleet view: one aggregator's as it sent it, or several joined. Fails only when no
    /// aggregator answered; those that did not are named in the view's `unanswered`.
    public func fleet() async throws(FleetClient.FetchError) -> (view: FleetView, json: Data) {
        guard clients.count > 1 else { return try await clients[0].fleet() }
        return try await joined()
    }

    /// The gateways `query` keeps, in its order, and the view they came in (its `gateways`
    /// that page). One aggregator pages and sorts them itself; several are joined whole first.
    public func gateways(_ query: FleetQuery) async throws(FleetClient.FetchError) -> (view: FleetView, rows: [GatewayView]) {
        let view = clients.count > 1 ? try await joined().view : try await clients[0].fleet(query).view
        // An aggregator that paged has applied the query; otherwise (several, or an older one) it is applied here.
        return (view, view.matched != nil ? view.gateways : query.page(query.apply(view)))
    }

    /// The fleet's totals: one aggregator's summary, or several aggregators' views joined.
    public func summary() async throws(FleetClient.FetchError) -> (view: FleetView, json: Data) {
        guard clients.count > 1 else { return try await clients[0].summary() }
        return try await joined()
    }

    private func joined() async throws(FleetClient.FetchError) -> (view: FleetView, json: Data) {
        let answers = await withTaskGroup(of: (Int, Result<FleetView, FleetClient.FetchError>).self) { group in
            for (index, client) in clients.enumerated() {
                group.addTask {
                    do throws(FleetClient.FetchError) { return (index, .success(try await client.fleet().view)) } catch { return (index, .failure(error)) }
                }
            }
            var answers: [(Int, Result<FleetView, FleetClient.FetchError>)] = []
            for await answer in group { answers.append(answer) }
            return answers.sorted { $0.0 < $1.0 }.map(\.1)
        }
        var views: [FleetView] = []
        var unanswered: [String: String] = [:]
        var firstError: FleetClient.FetchError?
        for (client, answer) in zip(clients, answers) {
            switch answer {
            case .success(let view): views.append(view)
            case .failure(let error):
                unanswered[client.base] = error.description
                firstError = firstError ?? error
            }
        }
        guard !views.isEmpty else { throw firstError! }
        var merged = FleetMerge.merge(views, nowMs: WallClock.nowMs())
        merged.mergedFrom = clients.map(\.base)
        merged.unanswered = unanswered.isEmpty ? nil : unanswered
        return (merged, (try? encode(merged)) ?? Data())
    }

    /// One gateway in detail, joined over the aggregators that know it (its history interleaved,
    /// newest first).
    public func gateway(_ id: String) async throws(FleetClient.FetchError) -> (detail: GatewayDetail, json: Data) {
        guard clients.count > 1 else { return try await clients[0].gateway(id) }
        var details: [GatewayDetail] = []
        var firstError: FleetClient.FetchError?
        for client in clients {
            do throws(FleetClient.FetchError) {
                details.append(try await client.gateway(id).detail)
            } catch {
                firstError = firstError ?? error
            }
        }
        // Each aggregator's times moved onto this host's clock (see `FleetMerge.merge`).
        let nowMs = WallClock.nowMs()
        let shifted = details.map { d -> GatewayDetail in
            let offset = nowMs.saturatingMinus(d.generatedAtMs)
            var d = d
            d.gateway = FleetMerge.shifted(d.gateway, by: offset)
            d.history = d.history.map { e in
                var e = e
                e.atMs = e.atMs.saturatingAdd(offset)
                return e
            }
            d.generatedAtMs = nowMs
            return d
        }
        guard var merged = shifted.max(by: { $0.gateway.lastSeenMs < $1.gateway.lastSeenMs }) else { throw firstError! }
        merged.gateway = FleetMerge.merge(shifted.map(\.gateway))
        merged.history = shifted.flatMap(\.history).sorted { $0.atMs > $1.atMs }
        return (merged, (try? encode(merged)) ?? Data())
    }
}
