import Foundation
import Testing
import TributaryTesting

/// TLS failures in an operator's words, from the real executables against a real HTTPS
/// aggregator: what is wrong, and the setting that fixes it, never BoringSSL's internals.
@Suite("TLS failures in an operator's words")
struct TLSErrorWordsTests {
    @Test("tributaryctl: an untrusted certificate names --ca-file; http:// to an HTTPS port says use https://; https:// to a plain port says use http://")
    func tributaryctlSaysWhatToFix() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let pki = try await TestPKI(in: dir)
        let server = try await pki.server()
        let tlsPort = try FreePort.allocate(), plainPort = try FreePort.allocate()
        try """
            listen: 127.0.0.1:\(tlsPort)
            data_dir: \(dir.file("tls"))
            tls:
              cert_file: \(server.certificate)
              key_file: \(server.key)
            """.write(toFile: dir.file("tls.yaml"), atomically: true, encoding: .utf8)
        try "listen: 127.0.0.1:\(plainPort)\ndata_dir: \(dir.file("plain"))\n".write(toFile: dir.file("plain.yaml"), atomically: true, encoding: .utf8)
        let aggregator = try ProcessHarness.executable("tributary-aggregator")
        let https = try ChildProcess(executable: aggregator, arguments: ["--config", dir.file("tls.yaml")], logFile: dir.file("tls.log"))
        let plain = try ChildProcess(executable: aggregator, arguments: ["--config", dir.file("plain.yaml")], logFile: dir.file("plain.log"))
        try await FreePort.waitUntilListening(tlsPort)
        try await FreePort.waitUntilListening(plainPort)

        func ctl(_ url: String, _ extra: [String] = [], tokenFrom: String) async throws -> String {
            let args = ["-u", "TRIBUTARY_TOKEN", "TRIBUTARY_TOKEN_FILE=", "TRIBUTARY_CA_FILE=", try ProcessHarness.executable("tributaryctl"), "status",
                        "--aggregator", url, "--token-file", dir.file("\(tokenFrom)/admin-token")] + extra
            return try await ProcessHarness.run("/usr/bin/env", args, in: dir.path).output
        }
        let untrusted = try await ctl("https://127.0.0.1:\(tlsPort)", tokenFrom: "tls")
        #expect(untrusted.contains("not trusted") && untrusted.contains("--ca-file") && !untrusted.contains("handshake.cc"), "\(untrusted)")
        let plainToTLS = try await ctl("http://127.0.0.1:\(tlsPort)", tokenFrom: "tls")
        #expect(plainToTLS.contains("use https://"), "\(plainToTLS)")
        let tlsToPlain = try await ctl("https://127.0.0.1:\(plainPort)", ["--ca-file", pki.caFile], tokenFrom: "plain")
        #expect(tlsToPlain.contains("does not speak HTTPS") && !tlsToPlain.contains("tls_record.cc"), "\(tlsToPlain)")
        let trusted = try await ctl("https://127.0.0.1:\(tlsPort)", ["--ca-file", pki.caFile], tokenFrom: "tls")
        #expect(trusted.contains("sink"), "with the CA it answers: \(trusted)")
        _ = await https.stop()
        _ = await plain.stop()
    }
}
