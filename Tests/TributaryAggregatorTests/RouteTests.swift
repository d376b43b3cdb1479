import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
import TributaryAdminAPI
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
