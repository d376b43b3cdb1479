/// Who is sending a batch, from what the request shows: the client certificate of its TLS
/// connection (with `tls.client_ca_file`) and its bearer token (with `gateway_auth`).
/// Either proves a gateway; when both are shown they must name the same one. With neither
/// configured, batches are open to anyone who reaches the port (the demo).
enum BatchCredentials {
    enum Decision: Sendable, Equatable {
        /// Nothing configured: the request speaks for itself.
        case open
        case gateway(String, by: Proof)
        /// 401 or 403, with the reason sent back and audited.
        case refused(status: Int, reason: String)
    }

    enum Proof: String, Sendable {
        case certificate, token
    }

    /// `certificate`: what the connection's certificate says, nil when it showed none.
    /// `token`: the bearer token's reading, nil when no token file is configured.
    static func decide(certificate: ClientCertificate.Identity?, token: NamedTokens.Authentication?,
                       certificatesConfigured: Bool) -> Decision {
        switch (certificate, token) {
        case (.unusable(let reason)?, _):
            return .refused(status: 401, reason: reason)
        case (_, .unknown?):
            return .refused(status: 401, reason: "the token is not one this aggregator knows")
        case (.gateway(let byCertificate)?, .holder(let byToken)?):
            guard BatchIngestor.sameID(byCertificate, byToken) else {
                return .refused(status: 403, reason: "the client certificate is gateway \(byCertificate)'s and the token gateway \(byToken)'s")
            }
            return .gateway(byCertificate, by: .certificate)
        case (.gateway(let id)?, _):
            return .gateway(id, by: .certificate)
        case (nil, .holder(let id)?):
            return .gateway(id, by: .token)
        case (nil, .missing?):
            return .refused(status: 401, reason: certificatesConfigured
                ? "this aggregator takes batches only with a gateway client certificate or the gateway's token (Authorization: Bearer TOKEN)"
                : "this aggregator takes batches only with the gateway's token (Authorization: Bearer TOKEN)")
        case (nil, nil):
            return certificatesConfigured
                ? .refused(status: 401, reason: "this aggregator takes batches only from gateways with a client certificate signed by its client CA")
                : .open
        }
    }
}
