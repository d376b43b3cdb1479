import Foundation
import Logging
import Testing
@testable import TributaryAggregator
import TributaryTesting

@Suite("gateway token file")
struct GatewayTokensTests {
    @Test func linesCommentsAndBlanks() throws {
        let entries = try NamedTokens.parse("""
            # gateway  token
            gw-1  0123456789abcdef0123   # the first

            gw-2\tfedcba9876543210fedc
            """, file: "tokens")
        #expect(entries == [.init(gateway: "gw-1", token: Array("0123456789abcdef0123".utf8)),
                            .init(gateway: "gw-2", token: Array("fedcba9876543210fedc".utf8))])
    }

    /// A rotation: the gateway's old and new tokens both work until the old line goes.
    @Test func aGatewayMayHoldTwoTokensWhileOneIsRotated() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try dir.writeSecret("tokens", "gw-1 old-token-0123456789abcdef\ngw-1 new-token-0123456789abcdef\n")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let tokens = try NamedTokens(path: path, logger: logger)
        #expect(tokens.authenticate(authorization: "Bearer old-token-0123456789abcdef") == .holder("gw-1"))
        #expect(tokens.authenticate(authorization: "Bearer new-token-0123456789abcdef") == .holder("gw-1"))
        #expect(tokens.authenticate(authorization: "Bearer other-token-0123456789abcdef") == .unknown)
    }

    @Test func crlfLinesAreLines() throws {
        let entries = try NamedTokens.parse("# tokens\r\ngw-1 0123456789abcdef\r\ngw-2 fedcba9876543210\r\n", file: "tokens")
        #expect(entries.map(\.gateway) == ["gw-1", "gw-2"])
        #expect(entries.map { String(decoding: $0.token, as: UTF8.self) } == ["0123456789abcdef", "fedcba9876543210"])
    }

    @Test(arguments: [
        ("gw-1\n", "line 1: expected GATEWAY_ID TOKEN, found 1 fields"),
        ("# ok\ngw-1 short\n", "line 2: the token has fewer than 16 characters"),
        ("gw/1 0123456789abcdef\n", "line 1: the first field is not a valid gateway id (letters, digits, '-', '_', '.')"),
        ("gw-1 0123456789abcdef\ngw-1 fedcba9876543210\ngw-1 aaaaaaaaaaaaaaaa\n",
         "line 3: a third token for the gateway of lines 1 and 2 (two are allowed, for a rotation)"),
        ("gw-1 0123456789abcdef\n\ngw-2 0123456789abcdef\n", "line 3: the same token as line 1"),
        ("gw-1 0123456789abcdef extra\n", "line 1: expected GATEWAY_ID TOKEN, found 3 fields"),
        // Columns swapped: the message must not repeat the token.
        ("0123456789abcdef0123 gw-1\n", "line 1: the token has fewer than 16 characters"),
    ])
    func badLinesAreNamedByNumberOnly(_ text: String, _ expected: String) {
        #expect(throws: AggregatorStartError.self) { try NamedTokens.parse(text, file: "tokens") }
        do {
            _ = try NamedTokens.parse(text, file: "tokens")
        } catch {
            #expect(error.message == "gateway_auth.token_file tokens \(expected)")
            #expect(!error.message.contains("0123456789abcdef"))
        }
    }

    @Test func theHeaderSaysWhichGatewayIsTalking() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.writeSecret("tokens", "gw-1 0123456789abcdef\ngw-2 fedcba9876543210\n")
        let tokens = try NamedTokens(path: dir.file("tokens"), logger: Logger(label: "test"))
        #expect(tokens.authenticate(authorization: "Bearer fedcba9876543210") == .holder("gw-2"))
        #expect(tokens.authenticate(authorization: "bearer 0123456789abcdef ") == .holder("gw-1"))
        #expect(tokens.authenticate(authorization: nil) == .missing)
        #expect(tokens.authenticate(authorization: "Basic Z3c6eA==") == .missing)
        #expect(tokens.authenticate(authorization: "Bearer 0123456789abcdeX") == .unknown)
        #expect(tokens.authenticate(authorization: "Bearer 0123456789abcde") == .unknown)
    }

    @Test func aMissingOrEmptyFileIsAStartError() throws {
        #expect(throws: AggregatorStartError.self) { try NamedTokens(path: "/nonexistent/tokens", logger: Logger(label: "test")) }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.writeSecret("tokens", "# no gateways yet\n")
        #expect(throws: AggregatorStartError.self) { try NamedTokens(path: dir.file("tokens"), logger: Logger(label: "test")) }
        // Every user on the host could read the tokens and send as any gateway: refused, not warned of.
        try "gw-1 0123456789abcdef\n".write(toFile: dir.file("open"), atomically: true, encoding: .utf8)
        #expect { try NamedTokens(path: dir.file("open"), logger: Logger(label: "test")) } throws: { "\($0)".contains("chmod 600") }
    }

    @Test func aChangedFileIsReadAgainAndABadOneKeepsTheTokensInForce() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("tokens")
        try TemporaryDirectory.writeSecret("gw-1 0123456789abcdef\n", to: path)
        let tokens = try NamedTokens(path: path, logger: Logger(label: "test"))
        #expect(tokens.authenticate(authorization: "Bearer 0123456789abcdef") == .holder("gw-1"))

        try TemporaryDirectory.writeSecret("gw-1 rotated-0123456789\n", to: path)
        try await Task.sleep(for: .milliseconds(1100))
        #expect(tokens.authenticate(authorization: "Bearer rotated-0123456789") == .holder("gw-1"))
        #expect(tokens.authenticate(authorization: "Bearer 0123456789abcdef") == .unknown)

        // Broken, empty, open to other users, gone: each leaves the last good tokens in force.
        for damage in ["gw-1 short\n", "", "open", nil] as [String?] {
            if damage == "open" {
                try "gw-1 other-0123456789ab\n".write(toFile: path, atomically: true, encoding: .utf8)
            } else if let damage {
                try TemporaryDirectory.writeSecret(damage, to: path)
            } else {
                try FileManager.default.removeItem(atPath: path)
            }
            try await Task.sleep(for: .milliseconds(1100))
            #expect(tokens.authenticate(authorization: "Bearer rotated-0123456789") == .holder("gw-1"), "after \(damage ?? "deletion")")
        }
        #expect(tokens.count == 1)
    }

    @Test func theSectionNeedsItsFile() throws {
        do {
            _ = try AggregatorConfig.parse(yaml: "gateway_auth:\n  other: 1\n", file: "a.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.key == "gateway_auth.token_file", "\(error)")
        }
        let config = try AggregatorConfig.parse(yaml: "gateway_auth:\n  token_file: /etc/tributary/gateway-tokens\n", file: "a.yaml")
        #expect(config.gatewayTokenFile == "/etc/tributary/gateway-tokens")
    }
}
