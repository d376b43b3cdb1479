import Foundation
import Testing
@testable import TributaryAggregator
import TributaryTesting
import TributaryCrypto

/// Who a batch is from, for every mix of client certificate and token; and the `tls:` section.
@Suite("batch credentials")
struct BatchCredentialsTests {
    typealias Decision = BatchCredentials.Decision

    @Test(arguments: [
        // certificate, token, certificates configured -> decision
        (nil, nil, false, Decision.open),
        (nil, .holder("gw-1"), false, .gateway("gw-1", by: .token)),
        (.gateway("gw-1"), nil, true, .gateway("gw-1", by: .certificate)),
        (.gateway("gw-1"), .missing, true, .gateway("gw-1", by: .certificate)),
        (.gateway("gw-1"), .holder("gw-1"), true, .gateway("gw-1", by: .certificate)),
        (nil, .holder("gw-1"), true, .gateway("gw-1", by: .token)),
    ] as [(ClientCertificate.Identity?, NamedTokens.Authentication?, Bool, Decision)])
    func provenGateways(_ certificate: ClientCertificate.Identity?, _ token: NamedTokens.Authentication?, _ configured: Bool, _ expected: Decision) {
        #expect(BatchCredentials.decide(certificate: certificate, token: token, certificatesConfigured: configured) == expected)
    }

    @Test(arguments: [
        (nil, nil, true, 401, "client certificate"),
        (nil, .missing, true, 401, "client certificate or the gateway's token"),
        (nil, .missing, false, 401, "the gateway's token"),
        (nil, .unknown, true, 401, "not one this aggregator knows"),
        // A valid certificate does not excuse a token no gateway holds.
        (.gateway("gw-1"), .unknown, true, 401, "not one this aggregator knows"),
        (.gateway("gw-1"), .holder("gw-2"), true, 403, "gw-2"),
        (.unusable(reason: "no common name"), .holder("gw-1"), true, 401, "no common name"),
    ] as [(ClientCertificate.Identity?, NamedTokens.Authentication?, Bool, Int, String)])
    func refusals(_ certificate: ClientCertificate.Identity?, _ token: NamedTokens.Authentication?, _ configured: Bool, _ status: Int, _ fragment: String) {
        guard case .refused(let got, let reason) = BatchCredentials.decide(certificate: certificate, token: token, certificatesConfigured: configured) else {
            Issue.record("not refused")
            return
        }
        #expect(got == status && reason.contains(fragment), "\(got): \(reason)")
    }

    @Test func tlsSection() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let pki = try await TestPKI(in: dir)
        let server = try await pki.server()
        let config = try AggregatorConfig.parse(yaml: """
            tls:
              cert_file: \(server.certificate)
              key_file: \(server.key)
              client_ca_file: \(pki.caFile)
              client_certificates: required
            """, file: "agg.yaml")
        #expect(config.tls?.clientCertificates == .required && config.tls?.clientCAFile == pki.caFile)
        _ = try config.tls?.serverConfiguration()

        func refused(_ yaml: String, _ fragments: String...) {
            #expect {
                _ = try AggregatorConfig.parse(yaml: yaml, file: "agg.yaml").tls?.serverConfiguration()
            } throws: { error in
                fragments.allSatisfy { "\(error)".contains($0) }
            }
        }
        refused("tls:\n  key_file: \(server.key)\n", "agg.yaml", "tls.cert_file", "required")
        refused("tls:\n  cert_file: \(dir.file("missing.pem"))\n  key_file: \(server.key)\n", "tls.cert_file", "missing.pem")
        refused("tls:\n  cert_file: \(server.certificate)\n  key_file: \(server.key)\n  client_certificates: required\n", "tls.client_certificates", "client_ca_file")
        refused("tls:\n  cert_file: \(server.certificate)\n  key_file: \(server.key)\n  client_certificates: maybe\n", "tls.client_certificates", "optional, required")
        // Files that exist but are not what they should be: found at start, named.
        refused("tls:\n  cert_file: \(server.key)\n  key_file: \(server.key)\n", "tls.cert_file", "cannot read certificates")
        refused("tls:\n  cert_file: \(server.certificate)\n  key_file: \(server.certificate)\n", "tls.key_file")
        let other = try await pki.client("gw-1")
        refused("tls:\n  cert_file: \(server.certificate)\n  key_file: \(other.key)\n", "is the key the certificate")
    }

    @Test func commonNameIsTheGateway() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let pki = try await TestPKI(in: dir)
        let issued = try await pki.client("gw-7.north")
        let certificate = try #require(try TLSFiles.certificates(issued.certificate, key: "test").first)
        #expect(ClientCertificate.identity(of: certificate) == .gateway("gw-7.north"))
        // openssl's -subj: a second common name, so the certificate names no single gateway.
        let twoNames = try await pki.client("gw-a/CN=gw-b", file: "two-names")
        let ambiguous = try #require(try TLSFiles.certificates(twoNames.certificate, key: "test").first)
        guard case .unusable(let reason) = ClientCertificate.identity(of: ambiguous) else {
            Issue.record("two common names were taken as a gateway")
            return
        }
        #expect(reason.contains("exactly one common name"))
    }
}
