import NIOSSL
import TributaryCore
import TributaryCrypto

extension AgentConfig.ClientTLS {
    /// NIOSSL's client side for the aggregator, checked now (see `TLSFiles`). A client
    /// certificate must name `gatewayID` (its common name): the aggregator takes that as the
    /// gateway's id, and would refuse every batch of an agent showing another's.
    public func clientConfiguration(gatewayID: String) throws(AgentStartError) -> TLSConfiguration {
        let tls: TLSConfiguration
        do {
            tls = try TLSFiles.client(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, keyPrefix: "aggregator.tls")
        } catch {
            throw AgentStartError(message: error.description)
        }
        if let leaf = tls.certificateChain.first, case .certificate(let certificate) = leaf {
            switch TLSFiles.commonName(of: certificate) {
            case .success(let name) where name.utf8.elementsEqual(gatewayID.utf8):
                break
            case .success(let name):
                throw AgentStartError(message: "aggregator.tls.cert_file: \(certificateFile ?? "") is gateway \(Printable.clean(name, maxLength: 64))'s certificate (its common name); this agent is gateway \(gatewayID), and the aggregator would refuse every batch")
            case .failure(let problem):
                throw AgentStartError(message: "aggregator.tls.cert_file: \(certificateFile ?? ""): \(problem)")
            }
        }
        return tls
    }
}
