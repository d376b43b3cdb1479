import NIOSSL
import TributaryCrypto

extension AgentConfig.ClientTLS {
    /// NIOSSL's client side for the aggregator, checked now (see `TLSFiles`).
    public func clientConfiguration() throws(AgentStartError) -> TLSConfiguration {
        do {
            return try TLSFiles.client(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, keyPrefix: "aggregator.tls")
        } catch {
            throw AgentStartError(message: error.description)
        }
    }
}
