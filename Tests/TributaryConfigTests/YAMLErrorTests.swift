import Testing
import TributaryConfig

/// A file that is not valid YAML is named with its line, never quoted: a secret written inline
/// would otherwise reach the log, `--check-config` and the fleet view's last error.
@Suite("YAML errors quote nothing")
struct YAMLErrorTests {
    static let secret = "s3cret-Passw0rd-inline"

    @Test(arguments: [
        // A duplicated key: the library quoted the whole mapping.
        "mqtt:\n  password: \(secret)\n  broker: mqtt://127.0.0.1:1883\n  broker: mqtt://127.0.0.1:1884\n",
        // A scanner error on the secret's own line: the library quoted the line.
        "mqtt:\n  password: \"\(secret)\n  broker: x\n",
        "mqtt:\n  password: \(secret)\n  - broker\n",
    ])
    func theSecretStaysOut(yaml: String) {
        #expect {
            try ConfigSection(yaml: yaml, file: "agent.yaml")
        } throws: { error in
            let text = "\(error)"
            // A problem of the whole file names no key (it said "key ''").
            return text.hasPrefix("agent.yaml: not valid YAML") && text.contains("line") && !text.contains(Self.secret)
        }
    }
}
