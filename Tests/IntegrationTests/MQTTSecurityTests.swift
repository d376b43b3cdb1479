import Foundation
import Testing
import TributaryMQTT
import TributarySimulator
import TributaryTesting

/// The agent toward a broker that asks for TLS, a password or a client certificate: real
/// mosquitto brokers on free loopback ports, with certificates made at test time. With the
/// right settings everything published arrives exactly once; with a wrong one the agent stays
/// up, says why in its log, keeps retrying, and delivers nothing until it is fixed.
@Suite("TLS and credentials toward the broker", .serialized)
struct MQTTSecurityTests {
    /// A directory with a CA and the broker's certificate for 127.0.0.1 (`serverDays: -1`: expired).
    struct Setup {
        let dir: TemporaryDirectory
        let pki: TestPKI
        let server: TestPKI.Issued

        init(serverDays: Int = 2) async throws {
            dir = try TemporaryDirectory()
            pki = try await TestPKI(in: dir)
            server = try await pki.server(days: serverDays)
        }

        func tlsListener(requireCertificate: Bool = false) -> MosquittoBroker.Security.TLS {
            .init(caFile: pki.caFile, certificateFile: server.certificate, keyFile: server.key,
                  requireCertificate: requireCertificate, useIdentityAsUsername: requireCertificate)
        }

        /// A file only its owner can read, as an operator would keep a password.
        func secret(_ name: String, _ text: String) throws -> String {
            let path = dir.file(name)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
            return path
        }
    }

    static let publisherPassword = "publisher-password-0"

    /// Publishes `count` messages as the test's publisher, with what the broker asks of it.
    static func publish(_ harness: ProcessHarness, count: Int, username: String? = "publisher", tls: MQTTClient.TLS? = nil) async throws -> Manifest {
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: harness.broker.url), gatewayID: harness.gatewayID,
                                              sensors: 10, rate: 500, count: count)
        options.username = username
        options.password = username == nil ? nil : publisherPassword
        options.tls = tls
        return try await SensorSimulator(options: options, logger: harness.logger).run()
    }

    /// Running, not a zombie waiting to be reaped.
    static func isRunning(_ process: ChildProcess) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !["Z", "X"].contains(stat[stat.index(close, offsetBy: 2)])
    }

    static let failureLine = "MQTT connection to the broker failed; retrying"

    static func failures(_ harness: ProcessHarness) -> Int {
        harness.agentLog.components(separatedBy: failureLine).count - 1
    }

    @Test("mqtts with the broker's CA and a password from password_file: every reading arrives exactly once")
    func tlsAndPasswordFile() async throws {
        let setup = try await Setup()
        let passwordFile = try setup.secret("mqtt-password", "agent-password-1\n")
        let harness = try await ProcessHarness(
            gatewayID: "gw-tls", directory: setup.dir,
            brokerSecurity: .init(tls: setup.tlsListener(), passwords: ["gw-tls": "agent-password-1", "publisher": Self.publisherPassword]),
            mqttSettings: ["username: gw-tls", "password_file: \(passwordFile)", "tls:", "  ca_file: \(setup.pki.caFile)"])
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        do {
            let manifest = try await Self.publish(harness, count: 1500, tls: .init(caFile: setup.pki.caFile))
            let report = try await harness.verifyWhenComplete(manifest)
            #expect(report.passed && report.missing == 0 && report.duplicates == 0, "\(report)")
            #expect(harness.agentLog.contains("mqtts://127.0.0.1:\(harness.broker.port)"))
            #expect(!harness.agentLog.contains("agent-password-1"), "the password never reaches the log")
            #expect(Self.failures(harness) == 0, "\(harness.agentLog)")
        } catch {
            await harness.stop(agent, aggregator)
            setup.dir.remove()
            throw error
        }
        await harness.stop(agent, aggregator)
        setup.dir.remove()
    }

    @Test("a broker that requires client certificates: the agent with its certificate delivers everything")
    func clientCertificate() async throws {
        let setup = try await Setup()
        let gateway = try await setup.pki.client("gw-cert")
        let publisher = try await setup.pki.client("publisher")
        let harness = try await ProcessHarness(
            gatewayID: "gw-cert", directory: setup.dir,
            brokerSecurity: .init(tls: setup.tlsListener(requireCertificate: true)),
            mqttSettings: ["tls:", "  ca_file: \(setup.pki.caFile)", "  cert_file: \(gateway.certificate)", "  key_file: \(gateway.key)"])
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        do {
            let manifest = try await Self.publish(harness, count: 1500, username: nil, tls: .init(
                caFile: setup.pki.caFile, certificateFile: publisher.certificate, keyFile: publisher.key))
            let report = try await harness.verifyWhenComplete(manifest)
            #expect(report.passed && report.missing == 0 && report.duplicates == 0, "\(report)")
            // The broker knew the agent by its certificate's common name.
            #expect(harness.broker.log.contains("as tributary-gw-cert") && harness.broker.log.contains("u'gw-cert'"), "\(harness.broker.log)")
        } catch {
            await harness.stop(agent, aggregator)
            setup.dir.remove()
            throw error
        }
        await harness.stop(agent, aggregator)
        setup.dir.remove()
    }

    enum Misconfiguration: String, CaseIterable, CustomTestStringConvertible {
        case wrongCA, expiredBrokerCertificate, missingClientCertificate, wrongPassword
        var testDescription: String { rawValue }
    }

    @Test("a wrong CA, an expired broker certificate, a missing client certificate or a wrong password: the agent stays up, says why, retries, delivers nothing",
          arguments: Misconfiguration.allCases)
    func misconfigured(_ problem: Misconfiguration) async throws {
        let setup = try await Setup(serverDays: problem == .expiredBrokerCertificate ? -1 : 2)
        var security = MosquittoBroker.Security(tls: setup.tlsListener(), passwords: ["publisher": Self.publisherPassword])
        var settings: [String] = []
        var publisherTLS = MQTTClient.TLS(caFile: setup.pki.caFile)
        let expected: String
        switch problem {
        case .wrongCA:
            let otherCA = try await TestPKI(in: setup.dir, name: "other")
            settings = ["tls:", "  ca_file: \(otherCA.caFile)"]
            expected = "TLS: the broker's certificate is not trusted"
        case .expiredBrokerCertificate:
            settings = ["tls:", "  ca_file: \(setup.pki.caFile)"]
            expected = "TLS: the broker's certificate is not trusted"
            // The publisher is refused too: nothing to publish.
        case .missingClientCertificate:
            security = .init(tls: setup.tlsListener(requireCertificate: true))
            settings = ["tls:", "  ca_file: \(setup.pki.caFile)"]
            let publisher = try await setup.pki.client("publisher")
            publisherTLS = .init(caFile: setup.pki.caFile, certificateFile: publisher.certificate, keyFile: publisher.key)
            expected = "requires a client certificate: set cert_file and key_file"
        case .wrongPassword:
            security.passwords["gw-bad"] = "the-right-one"
            settings = ["username: gw-bad", "password_file: \(try setup.secret("mqtt-password", "not-the-right-one\n"))",
                        "tls:", "  ca_file: \(setup.pki.caFile)"]
            expected = "password_file"
        }
        let harness = try await ProcessHarness(gatewayID: "gw-bad", directory: setup.dir, brokerSecurity: security, mqttSettings: settings)
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent(waitForSubscription: false)
        do {
            try await eventually(timeout: .seconds(30), "the agent logs why it cannot connect, twice (it retries)") {
                Self.failures(harness) >= 2
            }
            let log = harness.agentLog
            let lines = log.split(separator: "\n").filter { $0.contains(Self.failureLine) }
            #expect(lines.allSatisfy { $0.contains(expected) }, "\(lines.prefix(3))")
            #expect(!log.contains("not-the-right-one"), "the password never reaches the log")
            if problem != .expiredBrokerCertificate {
                let username = problem == .missingClientCertificate ? nil : "publisher"
                let manifest = try await Self.publish(harness, count: 200, username: username, tls: publisherTLS)
                try await Task.sleep(for: .seconds(3))
                #expect(try await Verifier.verify(manifest, sink: harness.sink).found == 0)
            }
            #expect(Self.isRunning(agent), "the agent stays up")
            #expect(!log.contains("MQTT connected"))
        } catch {
            await harness.stop(agent, aggregator)
            setup.dir.remove()
            throw error
        }
        await harness.stop(agent, aggregator)
        setup.dir.remove()
    }

    @Test("a password changed under a subscribed agent: refused and explained, and once fixed, every reading the broker kept for it arrives")
    func fixingThePasswordDeliversWhatTheBrokerKept() async throws {
        let setup = try await Setup()
        let passwordFile = try setup.secret("mqtt-password", "first-password\n")
        let harness = try await ProcessHarness(
            gatewayID: "gw-fix", directory: setup.dir,
            brokerSecurity: .init(tls: setup.tlsListener(), passwords: ["gw-fix": "first-password", "publisher": Self.publisherPassword]),
            mqttSettings: ["username: gw-fix", "password_file: \(passwordFile)", "tls:", "  ca_file: \(setup.pki.caFile)"])
        let aggregator = try await harness.startAggregator()
        // Subscribed once: the broker now keeps the persistent session's QoS 1 messages.
        var agent = try await harness.startAgent()
        do {
            await agent.stop(signal: SIGTERM)
            _ = try setup.secret("mqtt-password", "a-typo\n")
            agent = try await harness.startAgent(waitForSubscription: false)
            try await eventually(timeout: .seconds(30), "the agent is refused") { Self.failures(harness) >= 1 }

            let manifest = try await Self.publish(harness, count: 800, tls: .init(caFile: setup.pki.caFile))
            try await Task.sleep(for: .seconds(2))
            #expect(try await Verifier.verify(manifest, sink: harness.sink).found == 0)
            #expect(Self.isRunning(agent))

            await agent.stop(signal: SIGTERM)
            _ = try setup.secret("mqtt-password", "first-password\n")
            agent = try await harness.startAgent()
            let report = try await harness.verifyWhenComplete(manifest)
            #expect(report.passed && report.missing == 0 && report.duplicates == 0, "\(report)")
        } catch {
            await harness.stop(agent, aggregator)
            setup.dir.remove()
            throw error
        }
        await harness.stop(agent, aggregator)
        setup.dir.remove()
    }
}
