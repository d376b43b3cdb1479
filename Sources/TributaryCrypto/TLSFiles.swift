import NIOSSL
import X509

/// TLS settings built from PEM files named in a config, checked when they are read: a file
/// that is not PEM, or a key that does not match its certificate, is reported at start with
/// the config key named, not at the first handshake. Peers' names are always verified; there
/// is no setting that turns verification off.
public enum TLSFiles {
    public struct Problem: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// A client: trusts the CAs in `caFile` (nil: the system's), and shows a certificate when
    /// given one. `keyPrefix` (e.g. `aggregator.tls`) names the keys in messages.
    public static func client(caFile: String?, certificateFile: String?, keyFile: String?, keyPrefix: String) throws(Problem) -> TLSConfiguration {
        var tls = clientBase()
        if let caFile { tls.trustRoots = .certificates(try certificates(caFile, key: "\(keyPrefix).ca_file")) }
        if let certificateFile, let keyFile {
            tls.certificateChain = try certificates(certificateFile, key: "\(keyPrefix).cert_file").map { .certificate($0) }
            tls.privateKey = .privateKey(try privateKey(keyFile, key: "\(keyPrefix).key_file"))
        }
        return try checked(tls, keyPrefix: keyPrefix)
    }

    /// A client that trusts only the CAs in `caFile`; `key` is the setting or flag that named it.
    public static func trusting(_ caFile: String, key: String) throws(Problem) -> TLSConfiguration {
        var tls = clientBase()
        tls.trustRoots = .certificates(try certificates(caFile, key: key))
        return tls
    }

    private static func clientBase() -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        return tls
    }

    /// Client certificates a server asks for: signed by the CAs in `caFile`; `required` fails
    /// the handshake without one, otherwise one shown is verified (chain, dates) and one not
    /// shown lets the connection through.
    public struct ClientCertificates: Sendable {
        public var caFile: String
        public var required: Bool

        public init(caFile: String, required: Bool) {
            self.caFile = caFile
            self.required = required
        }
    }

    /// A server showing `certificateFile` (its certificate, then intermediates), asking for
    /// `clientCertificates` when given. `keyPrefix` (e.g. `tls`) names the keys in messages.
    public static func server(certificateFile: String, keyFile: String, clientCertificates: ClientCertificates? = nil,
                              keyPrefix: String) throws(Problem) -> TLSConfiguration {
        let chain = try certificates(certificateFile, key: "\(keyPrefix).cert_file")
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                           privateKey: .privateKey(try privateKey(keyFile, key: "\(keyPrefix).key_file")))
        tls.minimumTLSVersion = .tlsv12
        if let clientCertificates {
            tls.trustRoots = .certificates(try certificates(clientCertificates.caFile, key: "\(keyPrefix).client_ca_file"))
            tls.certificateVerification = clientCertificates.required ? .noHostnameVerification : .optionalVerification
            tls.sendCANameList = true
        }
        return try checked(tls, keyPrefix: keyPrefix)
    }

    public static func certificates(_ path: String, key: String) throws(Problem) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw Problem(description: "\(key): cannot read certificates from \(path) (\(error))")
        }
        guard !certificates.isEmpty else { throw Problem(description: "\(key): \(path) holds no PEM certificate") }
        return certificates
    }

    static func privateKey(_ path: String, key: String) throws(Problem) -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw Problem(description: "\(key): \(path) holds no usable PEM private key (\(error)); encrypted keys are not supported")
        }
    }

    /// Builds a context once, as the first connection would: this is where a key that does not
    /// match its certificate shows.
    public static func checked(_ tls: TLSConfiguration, keyPrefix: String) throws(Problem) -> TLSConfiguration {
        do {
            _ = try NIOSSLContext(configuration: tls)
        } catch {
            throw Problem(description: "\(keyPrefix): the files given do not make a usable TLS setup; is the key the certificate's? (\(error))")
        }
        return tls
    }

    /// The subject's common name, which must be there exactly once: a gateway certificate's
    /// gateway id.
    public static func commonName(of certificate: NIOSSLCertificate) -> Result<String, Problem> {
        let parsed: Certificate
        do {
            parsed = try Certificate(derEncoded: try certificate.toDERBytes())
        } catch {
            return .failure(Problem(description: "the certificate cannot be read (\(error))"))
        }
        let names = parsed.subject.flatMap { $0 }.filter { $0.type == .RDNAttributeType.commonName }
        guard names.count == 1 else {
            return .failure(Problem(description: "the certificate's subject must hold exactly one common name, the gateway id; it holds \(names.count)"))
        }
        guard let name = String(names[0].value), !name.isEmpty else {
            return .failure(Problem(description: "the certificate's common name is empty or not in a text encoding this reads (UTF8String, PrintableString, IA5String)"))
        }
        return .success(name)
    }
}
