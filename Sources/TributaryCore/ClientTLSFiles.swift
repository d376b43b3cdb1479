/// The PEM files of a TLS client: the CA(s) to verify the server against (nil: the system's)
/// and, both or neither, a client certificate and its unencrypted key. Read from config by
/// `ConfigSection.clientTLSFiles`; used toward the broker (libmosquitto) and the aggregator (NIOSSL).
public struct ClientTLSFiles: Sendable, Equatable {
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}
