/// Why a connection to a server failed, in an operator's words and naming the setting to fix,
/// instead of BoringSSL's internals (`handshakeFailed(... CERTIFICATE_VERIFY_FAILED at
/// .../handshake.cc:320)`) or a bare `remoteConnectionClosed`. Works from the error's
/// description, so it covers NIOSSL's and AsyncHTTPClient's errors alike; what it does not
/// recognise is shown as it is.
public enum ConnectionTrouble {
    /// The settings a sender names: the agent's config keys, or a tool's flags.
    public struct Settings: Sendable {
        public var caFile: String
        public var clientCertificate: String

        public init(caFile: String, clientCertificate: String) {
            self.caFile = caFile
            self.clientCertificate = clientCertificate
        }

        public static let agent = Settings(caFile: "aggregator.tls.ca_file", clientCertificate: "aggregator.tls.cert_file and key_file")
        public static let relay = Settings(caFile: "upstream.tls.ca_file", clientCertificate: "upstream.tls.cert_file and key_file")
        public static let tool = Settings(caFile: "--ca-file (or TRIBUTARY_CA_FILE)", clientCertificate: "a client certificate")
    }

    public static func describe(_ error: any Error, url: String, settings: Settings) -> String {
        let text = String(describing: error)
        let https = url.lowercased().hasPrefix("https://")
        let place = hostAndPort(url)
        func has(_ words: String...) -> Bool { words.contains { text.contains($0) } }
        if has("CERTIFICATE_VERIFY_FAILED") {
            return "the certificate of \(place) is not trusted (not signed by the CA given, expired, or not yet valid): set \(settings.caFile) to the CA file that signed it"
        }
        if has("failedToValidateHostname", "HOSTNAME_MISMATCH") {
            return "the certificate of \(place) does not name that host: use a name or address its subjectAltName lists, or reissue it with this one"
        }
        if has("CERTIFICATE_REQUIRED", "certificate required", "CERTIFICATE_UNKNOWN", "TLSV1_ALERT_UNKNOWN_CA", "BAD_CERTIFICATE") {
            return "\(place) refused the TLS handshake for the client certificate (missing, or not signed by its client CA): set \(settings.clientCertificate)"
        }
        if https, has("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST") {
            return "\(place) does not speak HTTPS: use http:// in the URL (or the server's HTTPS port)"
        }
        if !https, has("remoteConnectionClosed") {
            return "\(place) closed the connection without an answer: if it speaks HTTPS (a tls: section), use https:// in the URL"
        }
        if has("Connection refused") {
            return "nothing listens at \(place) (connection refused): is the server running, and is the URL right?"
        }
        if has("UnknownHost", "Name or service not known") {
            return "the host of \(url) does not resolve (DNS)"
        }
        if has("deadlineExceeded", "connectTimeout", "readTimeout") {
            return "no answer from \(place) in time"
        }
        return "\(place): \(text)"
    }

    private static func hostAndPort(_ url: String) -> String {
        let parts = url.split(separator: "://", maxSplits: 1)
        let rest = parts.count == 2 ? parts[1] : Substring(url)
        return String(rest.prefix { $0 != "/" })
    }
}
