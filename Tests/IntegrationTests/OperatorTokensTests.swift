import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TributaryAggregator
import TributaryTesting

/// `admin.tokens_file`: operators by name. Each name's token opens the admin API and `/metrics`,
/// the audit log says which operator asked, and an edited file takes effect without a restart.
@Suite("operator tokens by name")
struct OperatorTokensTests {
    static let alice = "alice-token-0123456789abcdef"
    static let bob = "bob-token-0123456789abcdef01"
    static let carol = "carol-token-0123456789abcdef"

    @Test("each operator's token opens the API under their name in the audit log; an edit takes effect without a restart")
    func namedOperators() async throws {
        let directory = try TemporaryDirectory()
        let tokenFile = directory.file("operator-tokens")
        try TemporaryDirectory.writeSecret("# operators\nalice \(Self.alice)\nbob \(Self.bob)\n", to: tokenFile)
        try await withHarness(directory: directory, configure: { config in
            config.operatorTokenFile = tokenFile
            config.adminToken = .none
        }) { harness in
            try await withHTTPClient(HTTPClient(eventLoopGroupProvider: .singleton)) { http in
                func status(_ path: String, token: String?) async throws -> UInt {
                    var request = HTTPClientRequest(url: harness.aggregatorURL + path)
                    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
                    let response = try await http.execute(request, timeout: .seconds(10))
                    _ = try await response.body.collect(upTo: 1 << 24)
                    return response.status.code
                }
                #expect(try await status("/v1/fleet", token: Self.alice) == 200)
                #expect(try await status("/metrics", token: Self.bob) == 200)
                #expect(try await status("/v1/fleet", token: nil) == 401)
                #expect(try await status("/v1/fleet", token: Self.carol) == 401)
                #expect(!FileManager.default.fileExists(atPath: harness.directory.file("aggregator/admin-token")),
                        "with named tokens alone, no unnamed token is made")

                // Alice leaves, carol joins: no restart.
                try TemporaryDirectory.writeSecret("bob \(Self.bob)\ncarol \(Self.carol)\n", to: tokenFile)
                try await eventually(timeout: .seconds(20), "the edited file is read") {
                    try await status("/v1/fleet", token: Self.carol) == 200
                }
                #expect(try await status("/v1/fleet", token: Self.alice) == 401)
                // A broken edit keeps the tokens in force.
                try TemporaryDirectory.writeSecret("carol short\n", to: tokenFile)
                try await Task.sleep(for: .milliseconds(1200))
                #expect(try await status("/v1/fleet", token: Self.carol) == 200)

                let lines = try GatewayAuthTests.auditLines(harness).filter { $0.contains("\"kind\":\"operator\"") }
                func actors(_ name: String) -> Int { lines.filter { $0.contains("\"actor\":\"\(name)\"") }.count }
                #expect(actors("operator:alice") == 1 && actors("operator:bob") == 1 && actors("operator:carol") == 2, "\(lines.joined(separator: "\n"))")
                #expect(actors("unauthenticated") >= 1 && actors("operator") == 0, "refusals are audited too (repeats from one address summed); none speaks for an unnamed operator")
            }
        }
    }

    /// A named token that is also the unnamed one would be audited as `operator` and survive the
    /// removal of its line (attack round 12): refused at start, and on a reload.
    @Test("a named token equal to the unnamed operator token is refused")
    func namedTokenEqualToTheUnnamedOne() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let unnamed = "the-unnamed-token-0123456789"
        try TemporaryDirectory.writeSecret("alice \(unnamed)\n", to: directory.file("operator-tokens"))
        var config = AggregatorConfig(listenPort: 0, dataDirectory: directory.file("aggregator"))
        config.adminToken = .inline(unnamed)
        config.operatorTokenFile = directory.file("operator-tokens")
        #expect {
            _ = try Aggregator(config: config, logger: .init(label: "test"))
        } throws: { "\($0)".contains("admin.tokens_file") && "\($0)".contains("alice's token is the one of admin.token") }
    }
}
