import CMosquitto
import Foundation
import Testing
@testable import TributaryMQTT

/// The words an operator reads when the agent cannot connect. The failures themselves, against
/// a real broker, are in the integration tests (MQTTSecurityTests).
@Suite("connection failures explained")
struct MQTTConnectFailureTests {
    static let tlsBroker = MQTTBroker(host: "127.0.0.1", port: 8883, tls: true)
    static let plainBroker = MQTTBroker(host: "127.0.0.1", port: 1883)

    func explain(rc: mosq_err_t = MOSQ_ERR_ERRNO, errorNumber: Int32 = 0, refusal: Int32? = nil, logged: [String] = [],
                 broker: MQTTBroker = tlsBroker, hasClientCertificate: Bool = false) -> String {
        MQTTConnectFailure.explain(rc: rc.rawValue, errorNumber: errorNumber, refusal: refusal, libraryErrors: logged,
                                   broker: broker, clientID: "tributary-gw-1", hasClientCertificate: hasClientCertificate)
    }

    @Test func refusedCredentialsNameWhatToCheck() {
        let notAuthorised = explain(rc: MOSQ_ERR_CONN_REFUSED, refusal: 5)
        #expect(notAuthorised.contains("not authorised") && notAuthorised.contains("password_file"), "\(notAuthorised)")
        let badPassword = explain(rc: MOSQ_ERR_CONN_REFUSED, refusal: 4)
        #expect(badPassword.contains("refused the username or password"), "\(badPassword)")
        #expect(explain(rc: MOSQ_ERR_CONN_REFUSED, refusal: 2).contains("client id 'tributary-gw-1'"))
    }

    @Test func anUntrustedBrokerCertificate() {
        let text = explain(rc: MOSQ_ERR_TLS, logged: ["OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed"])
        #expect(text.hasPrefix("TLS: the broker's certificate is not trusted"), "\(text)")
        #expect(text.contains("ca_file") && text.contains("expired") && text.contains("certificate verify failed"), "\(text)")
    }

    @Test func theBrokerWantsOrRefusesOurCertificate() {
        let required = explain(logged: ["OpenSSL Error[0]: error:0A00045C:SSL routines::tlsv13 alert certificate required"])
        #expect(required.contains("requires a client certificate") && required.contains("cert_file"), "\(required)")
        let refused = explain(logged: ["OpenSSL Error[0]: error:0A000415:SSL routines::sslv3 alert certificate expired"])
        #expect(refused.contains("refused our client certificate"), "\(refused)")
        // TLS 1.3: the broker checks the certificate after the handshake and just closes.
        let closedWithout = explain(rc: MOSQ_ERR_PROTOCOL)
        #expect(closedWithout.contains("requires a client certificate: set cert_file and key_file"), "\(closedWithout)")
        let closedWith = explain(rc: MOSQ_ERR_PROTOCOL, hasClientCertificate: true)
        #expect(closedWith.contains("may refuse our client certificate"), "\(closedWith)")
    }

    @Test func plainAndTLSMixedUp() {
        let tlsToPlain = explain(rc: MOSQ_ERR_TLS, logged: ["OpenSSL Error[0]: error:0A00010B:SSL routines::wrong version number"])
        #expect(tlsToPlain.contains("does not answer in TLS"), "\(tlsToPlain)")
        let plainToTLS = explain(rc: MOSQ_ERR_CONN_LOST, broker: Self.plainBroker)
        #expect(plainToTLS.contains("use an mqtts:// broker URL"), "\(plainToTLS)")
    }

    @Test func anUnreachableBroker() {
        #expect(explain(errorNumber: ECONNREFUSED).contains("cannot reach the broker at 127.0.0.1:8883: Connection refused"))
    }
}
