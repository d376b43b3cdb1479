import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import Testing
import TributaryAgent
import TributaryAggregator
import TributaryCore
import TributaryMQTT
import TributarySimulator
import TributaryTesting
import TributaryCrypto
import TributaryWire

/// The aggregator's `tls:` section, with certificates made at test time: a real agent verifies
/// the aggregator and delivers everything, over HTTPS and with a client certificate as its only
/// credential; clients that cannot prove who they are, or trust the wrong CA, write nothing.
@Suite("aggregator TLS")
struct AggregatorTLSTests {
    /// A CA made now, the aggregator's certificate, and a tls: section asking gateways for theirs.
    static func mutualTLS(_ mode: AggregatorConfig.ServerTLS.ClientCertificates) async throws
        -> (pki: TestPKI, tls: AggregatorConfig.ServerTLS, directory: TemporaryDirectory) {
        let directory = try TemporaryDirectory()
        let pki = try await TestPKI(in: directory)
        let server = try await pki.server()
        var tls = AggregatorConfig.ServerTLS(certificateFile: server.certificate, keyFile: server.key, clientCAFile: pki.caFile)
        tls.clientCertificates = mode
        return (pki, tls, directory)
    }

    /// A failed handshake comes back at once, instead of being retried until the deadline.
    static func client() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    @Test("mTLS: the agent's certificate is its identity; no certificate, another gateway's, an expired one or another CA's writes nothing")
    func clientCertificatesDecideWhoMayWrite() async throws {
        let (pki, tls, directory) = try await Self.mutualTLS(.optional)
        try await withHarness(tls: tls, trusting: pki.caFile, directory: directory) { harness in
            try await withHTTPClient(Self.client()) { http in
                // A real agent whose only credential is its certificate: everything arrives, exactly.
                let own = try await pki.client("gw-tls")
                let agent = try await harness.startAgent(try harness.agentConfig(gatewayID: "gw-tls", extra: """
                      tls:
                        ca_file: \(pki.caFile)
                        cert_file: \(own.certificate)
                        key_file: \(own.key)
                    """))
                let report = try await harness.publishAndVerify(gatewayID: "gw-tls", count: 400, rate: 500, seed: 5)
                #expect(report.passed, "\(report)")
                try await agent.stop()

                // By hand: one batch of gw-tls, shown with various credentials.
                let url = harness.aggregatorURL
                let batch = GatewayAuthTests.request(gateway: "gw-tls", sequence: 1, readingsOf: "gw-tls")
                func send(_ request: Tributary_V1_SyncRequest, _ tls: TLSConfiguration) async throws -> GatewayAuthTests.Answer {
                    try await GatewayAuthTests.post(request, token: nil, to: url, http: http, tls: tls)
                }
                func client(_ issued: TestPKI.Issued?, trusting caFile: String = pki.caFile) throws -> TLSConfiguration {
                    try TLSFiles.client(caFile: caFile, certificateFile: issued?.certificate, keyFile: issued?.key, keyPrefix: "test")
                }

                let anonymous = try await send(batch, try client(nil))
                #expect(anonymous.status == 401 && anonymous.reason.contains("client certificate"), "\(anonymous)")
                let other = try await pki.client("gw-other")
                let othersCertificate = try await send(batch, try client(other))
                #expect(othersCertificate.status == 403 && othersCertificate.reason.contains("gw-other"), "\(othersCertificate)")
                // A batch of gw-tls replayed by gw-other in its own name: still not gw-other's to send.
                var replayed = batch
                replayed.status.gatewayID = "gw-other"
                let replay = try await send(replayed, try client(other))
                #expect(replay.status == 400 && replay.reason.contains("gw-tls"), "\(replay)")

                // Refused in the handshake: nothing reaches the batches route at all.
                let expired = try await pki.client("gw-tls", file: "expired-gw-tls", days: -1)
                await #expect(throws: (any Error).self, "an expired certificate") { try await send(batch, try client(expired)) }
                let strangers = try await TestPKI(in: directory, name: "stranger")
                let foreign = try await strangers.client("gw-tls")
                await #expect(throws: (any Error).self, "a certificate of another CA") { try await send(batch, try client(foreign)) }
                await #expect(throws: (any Error).self, "a client that trusts another CA") {
                    try await send(batch, try client(own, trusting: strangers.caFile))
                }
                #expect(try GatewayAuthTests.rawRows(harness) == 0, "no refused request wrote a reading")
                // The registry knows gw-other only by its refused replay: nothing synced.
                let gateways = try await fetchFleet(harness).view.gateways
                #expect(gateways.map(\.gatewayID) == ["gw-other", "gw-tls"])
                let replayer = gateways.first { $0.gatewayID == "gw-other" }
                #expect(replayer?.readingsSynced == 0 && replayer?.batchesSynced == 0, "\(String(describing: replayer))")

                // The right certificate by hand too, and the audit log says who it was.
                #expect(try await send(batch, try client(own)).status == 200)
                #expect(try GatewayAuthTests.rawRows(harness) == 3)
                let audit = try GatewayAuthTests.auditLines(harness)
                #expect(audit.contains { $0.contains("\"actor\":\"gateway:gw-tls\"") && $0.contains("\"outcome\":\"accepted\"") && $0.contains("gw-tls/raw/1") })
                #expect(audit.contains { $0.contains("\"actor\":\"unauthenticated\"") && $0.contains("\"http\":401") })
            }
        }
    }

    @Test("client_certificates: required refuses a client without one in the handshake; a token and a certificate must agree")
    func requiredCertificatesAndTokens() async throws {
        let (pki, tls, directory) = try await Self.mutualTLS(.required)
        let token = "token-of-gw-tls-0123456789abcdef", otherToken = "token-of-gw-other-0123456789abcd"
        try await withHarness(gatewayTokens: [("gw-tls", token), ("gw-other", otherToken)], tls: tls, trusting: pki.caFile, directory: directory) { harness in
            try await withHTTPClient(Self.client()) { http in
                let url = harness.aggregatorURL
                let own = try await pki.client("gw-tls")
                let withCertificate = try TLSFiles.client(caFile: pki.caFile, certificateFile: own.certificate, keyFile: own.key, keyPrefix: "test")
                let withoutCertificate = try TLSFiles.client(caFile: pki.caFile, certificateFile: nil, keyFile: nil, keyPrefix: "test")
                let batch = GatewayAuthTests.request(gateway: "gw-tls", sequence: 1, readingsOf: "gw-tls")
                await #expect(throws: (any Error).self, "no certificate, even with the right token") {
                    try await GatewayAuthTests.post(batch, token: token, to: url, http: http, tls: withoutCertificate)
                }
                let disagree = try await GatewayAuthTests.post(batch, token: otherToken, to: url, http: http, tls: withCertificate)
                #expect(disagree.status == 403 && disagree.reason.contains("gw-other"), "\(disagree)")
                #expect(try GatewayAuthTests.rawRows(harness) == 0)
                let agree = try await GatewayAuthTests.post(batch, token: token, to: url, http: http, tls: withCertificate)
                #expect(agree.status == 200, "\(agree)")
                #expect(try GatewayAuthTests.rawRows(harness) == 3)
            }
        }
    }
}
