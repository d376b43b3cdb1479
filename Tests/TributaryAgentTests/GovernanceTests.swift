import Foundation
import Testing
import TributaryConfig
import TributaryCore
import TributaryCrypto
import TributaryTesting
@testable import TributaryAgent

/// Subscription rules, applied in the agent: what is dropped, masked or hashed, and what the
/// config accepts.
@Suite("governance rules")
struct GovernanceTests {
    static func reading(_ metric: String, _ value: ReadingValue) -> Reading { .sample(metric: metric, timeMs: 1, value: value) }

    @Test(arguments: [
        ("owner.*", "owner.phone", true), ("owner.*", "owner", false), ("*.phone", "site.owner.phone", true),
        ("phone", "phone", true), ("phone", "phones", false), ("*", "", true), ("a*b*c", "aXXbYc", true), ("a*b*c", "aXXbY", false),
    ])
    func patterns(_ pattern: String, _ metric: String, _ matches: Bool) {
        #expect(SubscriptionPolicy.FieldRule(match: pattern, action: .drop).matches(metric) == matches)
    }

    @Test func rulesApplyToTheNewReadingsOnly() {
        let policy = SubscriptionPolicy(classification: .important, rules: [
            .init(match: "secret", action: .drop), .init(match: "owner.name", action: .mask), .init(match: "owner.*", action: .hash),
        ])
        let pseudonymizer = Pseudonymizer(key: Array("0123456789abcdef0123".utf8))
        var readings = [Self.reading("before", .double(1))]  // an earlier message's: untouched
        readings += [Self.reading("temperature", .double(21.5)), Self.reading("secret", .text("s3")),
                     Self.reading("owner.name", .text("Li Wei")), Self.reading("owner.phone", .text("+86 139 0000 0000")),
                     Self.reading("owner.id", .integer(42))]
        let dropped = policy.apply(to: &readings, from: 1, pseudonymizer: pseudonymizer)
        #expect(dropped == 1)
        #expect(readings.map(\.metric) == ["before", "temperature", "owner.name", "owner.phone", "owner.id"])
        #expect(readings[0].labels.isEmpty && readings[1].labels == ["classification": "important"])
        #expect(readings[1].value == .double(21.5))
        #expect(readings[2].value == .text("***"))
        #expect(readings[3].value == .text(pseudonymizer.pseudonym("+86 139 0000 0000")))
        #expect(readings[4].value == .text(pseudonymizer.pseudonym("42")))
    }

    @Test func pseudonymsAreKeyedHMACs() async throws {
        let pseudonymizer = Pseudonymizer(key: Array("0123456789abcdef0123".utf8))
        let a = pseudonymizer.pseudonym("+86 139 0000 0000")
        #expect(a == pseudonymizer.pseudonym("+86 139 0000 0000") && a != pseudonymizer.pseudonym("+86 139 0000 0001"))
        #expect(a != Pseudonymizer(key: Array("another key 0123456789".utf8)).pseudonym("+86 139 0000 0000"))
        // The same as openssl's HMAC-SHA256, first 16 bytes: anyone with the key can reproduce it.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try "+86 139 0000 0000".write(toFile: dir.file("value"), atomically: true, encoding: .utf8)
        let process = try ChildProcess(executable: "/usr/bin/openssl", arguments: ["dgst", "-sha256", "-hmac", "0123456789abcdef0123", "-r", dir.file("value")],
                                       logFile: dir.file("out"))
        _ = await process.wait()
        let hex = try String(contentsOfFile: dir.file("out"), encoding: .utf8).prefix(32)
        #expect(a == "h:" + hex)
    }

    static let base = """
        gateway_id: gw-001
        mqtt:
          subscriptions:
            - topic: "sensors/+/+"
              template: "sensors/{gateway}/{sensor}"
              format: json
        """

    @Test func configReadsRulesAndTheKey() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.writeSecret("key", "0123456789abcdef0123\n")
        let rules = """
                  classification: core
                  rules:
                    - match: owner.*
                      action: hash
                    - match: secret
                      action: drop
            """
        let config = try AgentConfig.parse(yaml: Self.base + "\n" + rules + "\ngovernance:\n  hash_key_file: \(dir.file("key"))\n", file: "a.yaml")
        #expect(config.hashKey == Array("0123456789abcdef0123".utf8))
        #expect(config.mqtt.subscriptions[0].policy == SubscriptionPolicy(classification: .core, rules: [
            .init(match: "owner.*", action: .hash), .init(match: "secret", action: .drop),
        ]))

        func refused(_ yaml: String, key: String, _ message: String) {
            #expect {
                _ = try AgentConfig.parse(yaml: yaml, file: "a.yaml")
            } throws: { error in
                (error as? ConfigError)?.key == key && "\(error)".contains(message)
            }
        }
        refused(Self.base + "\n" + rules, key: "mqtt.subscriptions[0].rules[0].action", "governance.hash_key_file")
        refused(Self.base + "\n      classification: secret\n", key: "mqtt.subscriptions[0].classification", "general, important, core")
        refused(Self.base + "\n      rules:\n        - match: x\n          action: encrypt\n", key: "mqtt.subscriptions[0].rules[0].action", "drop, mask, hash")
        refused(Self.base + "\n      rules:\n        - action: drop\n", key: "mqtt.subscriptions[0].rules[0].match", "required")
        try dir.writeSecret("short", "short\n")
        refused(Self.base + "\ngovernance:\n  hash_key_file: \(dir.file("short"))\n", key: "governance.hash_key_file", "at least 16")
    }
}
