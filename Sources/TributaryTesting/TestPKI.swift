import Foundation

/// A certificate authority made with `openssl` at test time, and the certificates it signs:
/// servers on 127.0.0.1, gateways named by their common name, expired ones. Keys are P-256
/// (fast to make) and unencrypted. Nothing here is fit for production.
public struct TestPKI: Sendable {
    public let directory: TemporaryDirectory
    public let name: String
    /// The CA's certificate, PEM: what a verifier trusts.
    public var caFile: String { directory.file("\(name)-ca.pem") }
    private var caKey: String { directory.file("\(name)-ca.key") }

    /// Files of one issued certificate.
    public struct Issued: Sendable {
        public let certificate: String
        public let key: String
    }

    /// Makes the CA; `name` keeps several CAs apart in one directory.
    public init(in directory: TemporaryDirectory, name: String = "test") async throws {
        self.directory = directory
        self.name = name
        try await Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", caKey, "-out", caFile, "-days", "2", "-subj", "/CN=Tributary test CA \(name)"],
                               in: directory)
    }

    /// A server certificate for 127.0.0.1 and localhost; `days: -1` makes one that expired yesterday.
    public func server(_ file: String = "server", days: Int = 2) async throws -> Issued {
        try await issue(file, commonName: "127.0.0.1", extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
                        days: days)
    }

    /// A client certificate whose subject common name is `commonName` (a gateway id).
    /// `days: -1` makes one that expired yesterday.
    public func client(_ commonName: String, file: String? = nil, days: Int = 2) async throws -> Issued {
        try await issue(file ?? "client-\(commonName)", commonName: commonName, extensions: "extendedKeyUsage=clientAuth\n", days: days)
    }

    private func issue(_ file: String, commonName: String, extensions: String, days: Int = 2) async throws -> Issued {
        let base = directory.file("\(name)-\(file)")
        try extensions.write(toFile: base + ".ext", atomically: true, encoding: .utf8)
        try await Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=\(commonName)"], in: directory)
        try await Self.openssl(["x509", "-req", "-in", base + ".csr", "-CA", caFile, "-CAkey", caKey, "-CAcreateserial",
                                "-out", base + ".pem", "-days", "\(days)", "-extfile", base + ".ext"], in: directory)
        return Issued(certificate: base + ".pem", key: base + ".key")
    }

    private static func openssl(_ arguments: [String], in directory: TemporaryDirectory) async throws {
        let log = directory.file("openssl.log")
        let process = try ChildProcess(executable: "/usr/bin/openssl", arguments: arguments, logFile: log)
        let status = await process.wait()
        guard status & 0x7F == 0, (status >> 8) & 0xFF == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestingError("openssl \(arguments.first ?? "") failed: \(text.split(separator: "\n").suffix(10).joined(separator: "\n"))")
        }
    }
}
