import Hummingbird
import NIOCore
import NIOSSL
import TributaryCrypto

extension AggregatorConfig.ServerTLS {
    /// NIOSSL's server side, checked now (see `TLSFiles`). `optional` client certificates let
    /// a connection without one through the handshake; the batches route then asks for a token.
    func serverConfiguration() throws(AggregatorStartError) -> TLSConfiguration {
        do {
            return try TLSFiles.server(certificateFile: certificateFile, keyFile: keyFile,
                                       clientCertificates: clientCAFile.map { .init(caFile: $0, required: clientCertificates == .required) },
                                       keyPrefix: "tls")
        } catch {
            throw AggregatorStartError(message: error.description)
        }
    }
}

/// A gateway's identity from its client certificate: the subject's common name, which must
/// be there exactly once. The handshake has already verified the certificate against
/// `tls.client_ca_file` (chain, dates), so whoever holds its key is that gateway.
enum ClientCertificate {
    enum Identity: Sendable, Equatable {
        case gateway(String)
        /// Verified, but it names no single gateway.
        case unusable(reason: String)
    }

    static func identity(of certificate: NIOSSLCertificate) -> Identity {
        switch TLSFiles.commonName(of: certificate) {
        case .success(let name): .gateway(name)
        case .failure(let problem): .unusable(reason: problem.description)
        }
    }

    /// The identity shown on `channel`'s TLS connection; nil when it showed no certificate.
    static func identity(on channel: any Channel) async -> Identity? {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        return identity(of: certificate)
    }
}

/// Hummingbird's request context plus the connection, whose TLS handler holds the client
/// certificate a gateway showed.
public struct AggregatorRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
