import Testing
import TributaryCrypto
import TributaryTesting

/// The batch hash chain's digests and hex, the pseudonyms, and the PEM files checked at start.
@Suite("crypto")
struct CryptoTests {
    @Test func digestsAreSHA256AndHexRoundTrips() {
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        let digest = BatchChain.digest(of: Array("abc".utf8))
        #expect(BatchChain.hex(digest) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(BatchChain.bytes(hex: BatchChain.hex(digest)) == digest)
        #expect(BatchChain.bytes(hex: "BA78") == [0xBA, 0x78], "upper case is read too")
        #expect(BatchChain.bytes(hex: "abc") == nil && BatchChain.bytes(hex: "zz") == nil && BatchChain.bytes(hex: "") == [])
    }

    @Test func pseudonymsAreStablePerKeyAndDifferAcrossKeys() {
        let a = Pseudonymizer(key: Array("0123456789abcdef0123".utf8))
        let b = Pseudonymizer(key: Array("another key, 20 bytes".utf8))
        let value = "+86 139 0000 0000"
        #expect(a.pseudonym(value) == a.pseudonym(value), "the same value always maps to the same pseudonym: joins still work")
        #expect(a.pseudonym(value) != b.pseudonym(value), "without the key, a guess cannot be tested")
        #expect(a.pseudonym(value) != a.pseudonym(value + " "))
        #expect(a.pseudonym(value).hasPrefix("h:") && a.pseudonym(value).count == 2 + 32)
    }

    @Test func certificatesNameTheirGatewayAndBadFilesNameTheKey() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let pki = try await TestPKI(in: dir)
        let issued = try await pki.client("gw-17")
        let certificates = try TLSFiles.certificates(issued.certificate, key: "tls.cert_file")
        #expect(certificates.count == 1)
        #expect((try? TLSFiles.commonName(of: certificates[0]).get()) == "gw-17")
        let notPEM = dir.file("not.pem")
        try "not a certificate\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
        do {
            _ = try TLSFiles.certificates(notPEM, key: "tls.cert_file")
            Issue.record("a file without a certificate was taken")
        } catch {
            #expect(error.description.contains("tls.cert_file") && error.description.contains(notPEM), "\(error)")
        }
        do {
            _ = try TLSFiles.trusting(dir.file("missing-ca.pem"), key: "aggregator.tls.ca_file")
            Issue.record("a missing CA file was taken")
        } catch {
            #expect(error.description.contains("aggregator.tls.ca_file"), "\(error)")
        }
    }
}

/// Connection failures as the clients describe them to an operator.
@Suite("connection trouble")
struct ConnectionTroubleTests {
    struct Raw: Error, CustomStringConvertible { let description: String }

    @Test func eachFailureNamesWhatToFix() {
        let verify = Raw(description: "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /x/handshake.cc:320]))")
        let text = ConnectionTrouble.describe(verify, url: "https://agg.example:8470", settings: .agent)
        #expect(text.contains("agg.example:8470") && text.contains("aggregator.tls.ca_file") && !text.contains("handshake.cc"), "\(text)")
        #expect(ConnectionTrouble.describe(Raw(description: "NIOSSLExtraError.failedToValidateHostname: Couldn't find <none>"), url: "https://10.0.0.5",
                                           settings: .agent).contains("subjectAltName"))
        #expect(ConnectionTrouble.describe(Raw(description: "HTTPClientError.remoteConnectionClosed"), url: "http://a:1", settings: .tool).contains("use https://"))
        #expect(ConnectionTrouble.describe(Raw(description: "sslError([... WRONG_VERSION_NUMBER ...])"), url: "https://a:1", settings: .tool).contains("use http://"))
        #expect(ConnectionTrouble.describe(Raw(description: "connection reset (error set): Connection refused) (errno: 111)"), url: "http://a:1/x",
                                           settings: .tool) == "nothing listens at a:1 (connection refused): is the server running, and is the URL right?")
        #expect(ConnectionTrouble.describe(Raw(description: "something new"), url: "http://a:1", settings: .tool) == "a:1: something new")
    }

    /// Gateway tokens are found by a keyed digest, then compared in constant time: every holder
    /// of ten thousand is found, a near miss (one byte off, one byte short) is not, and when two
    /// lines hold one token the later wins (as the file's reading always had it).
    @Test func secretIndexFindsEachHolderAndNothingElse() {
        let pairs = (0..<10_000).map { (secret: Array("token-\($0)-0123456789abcdef".utf8), value: "gw-\($0)") }
        let index = SecretIndex(pairs + [(secret: Array("token-7-0123456789abcdef".utf8), value: "gw-7-rotated")])
        #expect(index.count == 10_001)
        #expect(pairs.allSatisfy { pair in pair.value == "gw-7" || index.holder(of: pair.secret) == pair.value })
        #expect(index.holder(of: Array("token-7-0123456789abcdef".utf8)) == "gw-7-rotated")
        #expect(index.holder(of: Array("token-1-0123456789abcdeF".utf8)) == nil)
        #expect(index.holder(of: Array("token-1-0123456789abcde".utf8)) == nil)
        #expect(index.holder(of: []) == nil)
        #expect(SecretIndex<Int>.equalInConstantTime([1, 2, 3], [1, 2, 3]) && !SecretIndex<Int>.equalInConstantTime([1, 2, 3], [1, 2, 4]))
    }
}
