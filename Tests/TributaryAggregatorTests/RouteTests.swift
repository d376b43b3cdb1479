import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
import TributaryAdminAPI
import TributaryRuntime
import TributaryTesting
import TributaryWire
@testable import TributaryAggregator

/// The aggregator's routes, called without a server (HummingbirdTesting's router mode): what
/// each answers, with and without the operator token. The guarded server and the real
/// executable are covered by the integration tests.
@Suite("routes")
struct RouteTests {
    static let token = "route-test-token-0123456789"

    static func aggregator(in dir: TemporaryDirectory) throws -> Aggregator {
        var config = AggregatorConfig(listenPort: 0, dataDirectory: dir.path)
        config.adminToken = .inline(token)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return try Aggregator(config: config, logger: logger)
    }

    @Test func healthAndTheAdminAPI() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let aggregator = try Self.aggregator(in: dir)
        let withToken: HTTPFields = [.authorization: "Bearer \(Self.token)"]
        try await Application(responder: aggregator.routes).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: WireProtocol.fleetPath, method: .get) { response in
                #expect(response.status == .unauthorized, "the fleet view needs the operator token")
            }
            try await client.execute(uri: WireProtocol.fleetPath, method: .get, headers: [.authorization: "Bearer not-the-token-at-all"]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: WireProtocol.fleetPath, method: .get, headers: withToken) { response in
                #expect(response.status == .ok)
                let view = try JSONDecoder().decode(FleetView.self, from: Data(buffer: response.body))
                #expect(view.gateways.isEmpty && view.sink.hasPrefix("sqlite:"))
            }
            try await client.execute(uri: WireProtocol.gatewaysPath + "/gw-nobody", method: .get, headers: withToken) { response in
                #expect(response.status == .notFound && String(buffer: response.body).contains("gw-nobody"))
            }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .unauthorized) }
        }
        await aggregator.close()
    }

    /// `GET /v1/fleet` with a query sends one page, in the order asked, with the whole fleet's
    /// totals; `/v1/fleet/summary` the totals alone; a bad parameter is a 400 naming it.
    @Test func theFleetViewIsPagedAndSummarised() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let aggregator = try Self.aggregator(in: dir)
        let now = WallClock.nowMs()
        // Lags far apart, so a slow run (minutes under load) keeps their order and the filter's cut.
        for (index, lagSeconds) in [1800, 0, 18_000, 5].enumerated() {
            var status = Tributary_V1_GatewayStatus()
            status.gatewayID = "gw-\(index + 1)"
            status.backlogReadings = UInt64(lagSeconds)
            status.oldestUnsentMs = lagSeconds > 0 ? now - Int64(lagSeconds) * 1000 : 0
            try await aggregator.registry.record(status, event: .heartbeat, receivedAtMs: now)
        }
        let withToken: HTTPFields = [.authorization: "Bearer \(Self.token)"]
        @Sendable func view(_ uri: String, _ client: any TestClientProtocol) async throws -> FleetView {
            try await client.execute(uri: uri, method: .get, headers: withToken, body: nil) { response in
                #expect(response.status == .ok, "\(uri)")
                return try JSONDecoder().decode(FleetView.self, from: Data(buffer: response.body))
            }
        }
        try await Application(responder: aggregator.routes).test(.router) { client in
            let everything = try await view(WireProtocol.fleetPath, client)
            #expect(everything.gateways.map(\.gatewayID) == ["gw-1", "gw-2", "gw-3", "gw-4"] && everything.summary == nil && everything.matched == nil)
            let page = try await view(WireProtocol.fleetPath + "?sort=lag&limit=2", client)
            #expect(page.gateways.map(\.gatewayID) == ["gw-3", "gw-1"])
            #expect(page.matched == 4 && page.summary?.gateways == 4 && page.summary?.worstGatewayID == "gw-3")
            #expect(page.summary?.backlogReadings == 19_805)
            let next = try await view(WireProtocol.fleetPath + "?sort=lag&limit=2&offset=2", client)
            #expect(next.gateways.map(\.gatewayID) == ["gw-4", "gw-2"])
            let lagging = try await view(WireProtocol.fleetPath + "?lagging_ms=600000", client)
            #expect(lagging.gateways.map(\.gatewayID) == ["gw-1", "gw-3"] && lagging.matched == 2)
            let summary = try await view(WireProtocol.fleetPath + "/summary", client)
            #expect(summary.gateways.isEmpty && summary.summary == FleetTotals(gateways: everything.gateways, nowMs: summary.generatedAtMs))
            for bad in ["?sort=size", "?limit=-1", "?offset=x", "?stale=maybe", "?colour=red", "?sort=lag&sort=id"] {
                try await client.execute(uri: WireProtocol.fleetPath + bad, method: .get, headers: withToken) { response in
                    #expect(response.status == .badRequest, "\(bad)")
                    let name = String(bad.dropFirst().prefix { $0 != "=" })
                    #expect(String(buffer: response.body).contains(name), "the reason names \(name)")
                }
            }
        }
        await aggregator.close()
    }

    @Test func aBatchRequestThatIsNotOneIsRefusedWithItsReason() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let aggregator = try Self.aggregator(in: dir)
        try await Application(responder: aggregator.routes).test(.router) { client in
            try await client.execute(uri: WireProtocol.batchesPath, method: .post, headers: [.contentType: "text/plain"],
                                     body: ByteBuffer(string: "21.5")) { response in
                #expect(response.status == .unsupportedMediaType, "\(response.status)")
            }
            try await client.execute(uri: WireProtocol.batchesPath, method: .post, headers: [.contentType: WireProtocol.protobufContentType],
                                     body: ByteBuffer(bytes: [0xFF, 0xFF, 0xFF])) { response in
                #expect(response.status == .badRequest, "\(response.status)")
                let ack = try Tributary_V1_Ack(serializedBytes: Array(buffer: response.body))
                #expect(!ack.reason.isEmpty, "a 4xx says why")
            }
        }
        await aggregator.close()
    }
}
