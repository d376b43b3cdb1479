import CMosquitto
import Foundation

/// Why a connection attempt failed, in words an operator can act on. libmosquitto reports
/// a code; the useful part (OpenSSL's reason, the broker's CONNACK) comes from its log and
/// its connect callback, and is turned here into what to check.
enum MQTTConnectFailure {
    /// `refusal` is the CONNACK return code when the broker answered with one; `libraryErrors`
    /// what libmosquitto logged as errors during the attempt (OpenSSL's reasons among them).
    static func explain(rc: Int32, errorNumber: Int32, refusal: Int32?, libraryErrors: [String],
                        broker: MQTTBroker, clientID: String, hasClientCertificate: Bool) -> String {
        if let refusal { return explainRefusal(refusal, clientID: clientID) }
        let logged = libraryErrors.joined(separator: "; ")
        if rc == MOSQ_ERR_TLS.rawValue || libraryErrors.contains(where: { $0.contains("SSL") }) {
            return explainTLS(logged, broker: broker) + (logged.isEmpty ? "" : " (libmosquitto: \(logged))")
        }
        // A broker that requires a client certificate, or refuses ours, ends a TLS 1.3
        // connection after the handshake: the client sees only a closed connection.
        let closedEarly = [MOSQ_ERR_PROTOCOL, MOSQ_ERR_CONN_LOST, MOSQ_ERR_NO_CONN].map(\.rawValue).contains(rc)
            || (rc == MOSQ_ERR_ERRNO.rawValue && [EPROTO, ECONNRESET, EPIPE].contains(errorNumber))
        if broker.tls && closedEarly {
            return "the broker closed the TLS connection without accepting it: "
                + (hasClientCertificate
                    ? "it may refuse our client certificate (expired, or not signed by a CA it trusts); its log says why"
                    : "it probably requires a client certificate: set cert_file and key_file")
        }
        switch rc {
        case MOSQ_ERR_ERRNO.rawValue:
            return "cannot reach the broker at \(broker.host):\(broker.port): \(String(cString: strerror(errorNumber)))"
        case MOSQ_ERR_EAI.rawValue:
            return "cannot resolve the broker's host name '\(broker.host)'"
        case MOSQ_ERR_CONN_LOST.rawValue, MOSQ_ERR_NO_CONN.rawValue, MOSQ_ERR_KEEPALIVE.rawValue:
            return "the broker closed the connection before accepting it"
                + (broker.tls ? "" : "; if its listener expects TLS, use an mqtts:// broker URL")
        default:
            return String(cString: mosquitto_strerror(rc)) + (logged.isEmpty ? "" : " (libmosquitto: \(logged))")
        }
    }

    static func explainRefusal(_ code: Int32, clientID: String) -> String {
        let connack = String(cString: mosquitto_connack_string(code))
        let what = switch code {
        case 1: "the broker does not accept MQTT 3.1.1"
        case 2: "the broker rejected the client id '\(clientID)'"
        case 3: "the broker is unavailable for now"
        case 4: "the broker refused the username or password: check username and password (or password_file)"
        case 5: "the broker refused the connection as not authorised: check username and password (or password_file), "
            + "the client certificate, and the broker's ACL"
        default: "the broker refused the connection"
        }
        return "\(what) (CONNACK \(code): \(connack))"
    }

    static func explainTLS(_ logged: String, broker: MQTTBroker) -> String {
        let text = logged.lowercased()
        func has(_ fragments: String...) -> Bool { fragments.contains { text.contains($0) } }
        if has("certificate verify failed") {
            return "TLS: the broker's certificate is not trusted: it is not signed by the CA in ca_file (or a system CA, "
                + "without one), has expired or is not valid yet, or does not name \(broker.host)"
        }
        if has("alert certificate required") {
            return "TLS: the broker requires a client certificate: set cert_file and key_file"
        }
        if has("alert unknown ca", "alert bad certificate", "alert certificate expired", "alert certificate unknown",
               "alert certificate revoked", "alert decrypt error") {
            return "TLS: the broker refused our client certificate: it has expired, or is not signed by a CA the broker trusts"
        }
        if has("alert handshake failure") {
            return "TLS: the broker refused the handshake: it may require a client certificate, or share no TLS version or cipher with us"
        }
        if has("wrong version number", "packet length too long", "record layer failure") {
            return "TLS: the broker does not answer in TLS on port \(broker.port); is it a plain listener (mqtt://)?"
        }
        if has("key values mismatch") {
            return "TLS: the key in key_file does not belong to the certificate in cert_file"
        }
        if has("unable to load", "no such file", "pem routines", "bad decrypt") {
            return "TLS: cannot load the CA file, client certificate or key (an encrypted key is not supported)"
        }
        if has("unexpected eof") {
            return "TLS: the broker closed the connection during the handshake (a plain listener, or it refused our certificate)"
        }
        return "TLS handshake with the broker failed"
    }
}
