import Foundation
import Logging
import Testing
@testable import TributaryAggregator
import TributaryTesting

@Suite("gateway token file")
struct GatewayTokensTests {
    @Test func linesCommentsAndBlanks() throws {
        let entries = try GatewayTokens.parse("""
            # gateway  token
            gw-1  0123456789abcdef0123   # the first

            gw-2\tfedcba9876543210fedc
            """, file: "tokens")
        #expect(entries == [.init(gateway: "gw-1", token: Array("0123456789abcdef0123".utf8)),
                            .init(gateway: "gw-2", token: Array("fedcba9876543210fedc".utf8))])
    }

    @Test(arguments: [
        ("gw-1\n", "line 1: expected GATEWAY_ID TOKEN, found 1 fields"),
        ("# ok\ngw-1 short\n", "line 2: the token for gw-1 has fewer than 16 characters"),
        ("gw/1 0123456789abcdef\n", "line 1: 'gw/1' is not a valid gateway id"),
        ("gw-1 0123456789abcdef\ngw-1 fedcba9876543210\n", "line 2: gateway gw-1 is listed twice"),
        ("gw-1 0123456789abcdef\ngw-2 0123456789abcdef\n", "line 2: the token for gw-2 is another gateway's too"),
        ("gw-1 0123456789abcdef extra\n", "line 1: expected GATEWAY_ID TOKEN, found 3 fields"),
    ])
    func badLinesAreNamed(_ text: String, _ expected: String) {
        #expect(throws: AggregatorStartError.self) { try GatewayTokens.parse(text, file: "tokens") }
        do {
            _ = try GatewayTokens.parse(text, file: "tokens")
        } catch {
            #expect(error.message == "gateway_auth.token_file tokens \(expected)")
        }
    }

    @Test func theHeaderSaysWhichGatewayIsTalking() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try "gw-1 0123456789abcdef\ngw-2 fedcba9876543210\n".write(toFile: dir.file("tokens"), atomically: true, encoding: .utf8)
        let tokens = try GatewayTokens(path: dir.file("tokens"), logger: Logger(label: "test"))
        #expect(tokens.authenticate(authorization: "Bearer fedcba9876543210") == .gateway("gw-2"))
        #expect(tokens.authenticate(authorization: "bearer 0123456789abcdef ") == .gateway("gw-1"))
        #expect(tokens.authenticate(authorization: nil) == .missing)
        #expect(tokens.authenticate(authorization: "Basic Z3c6eA==") == .missing)
        #expect(tokens.authenticate(authorization: "Bearer 0123456789abcdeX") == .unknown)
        #expect(tokens.authenticate(authorization: "Bearer 0123456789abcde") == .unknown)
    }

    @Test func aMissingFileIsAStartError() {
        #expect(throws: AggregatorStartError.self) { try GatewayTokens(path: "/nonexistent/tokens", logger: Logger(label: "test")) }
    }

    @Test func theSectionNeedsItsFile() throws {
        #expect(throws: (any Error).self) { try AggregatorConfig.parse(yaml: "gateway_auth: {}\n", file: "a.yaml") }
        let config = try AggregatorConfig.parse(yaml: "gateway_auth:\n  token_file: /etc/tributary/gateway-tokens\n", file: "a.yaml")
        #expect(config.gatewayTokenFile == "/etc/tributary/gateway-tokens")
    }
}
