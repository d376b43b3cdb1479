import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import Testing
import TributaryRuntime
import TributarySync
import TributaryCore
import TributaryMQTT
import TributarySimulator
import TributarySQLite
import TributaryTesting
import TributaryWire

/// `gateway_auth.token_file`: a real agent with its token delivers everything; requests without
/// a token, with an unknown one, or speaking for another gateway are refused and write nothing;
/// a changed file takes effect without a restart, and a broken one keeps the tokens in force
/// (the reload itself is unit-tested in GatewayTokensTests).
@Suite("gateway tokens")
struct GatewayAuthTests {
    static let tokenA = "token-of-gw-auth-0123456789abcdef"
    static let tokenA2 = "rotated-token-of-gw-auth-fedcba98"
    static let tokenOther = "token-of-gw-other-0123456789abcd"

    @Test("the agent delivers with its token; no token, an unknown one or another gateway's is refused, and nothing of it is written")
    func tokensDecideWhoMayWrite() async throws {
        try await withHarness(gatewayTokens: [("gw-auth", Self.tokenA), ("gw-other", Self.tokenOther)]) { harness in
            try await withHTTPClient(HTTPClient(eventLoopGroupProvider: .singleton)) { http in
                // A real agent with its token file: everything it publishes arrives, exactly.
                try harness.directory.writeSecret("agent-token", Self.tokenA)
                let agent = try await harness.startAgent(try harness.agentConfig(gatewayID: "gw-auth", extra: "  token_file: \(harness.directory.file("agent-token"))"))
                let report = try await harness.publishAndVerify(gatewayID: "gw-auth", count: 400, rate: 500, seed: 3)
                #expect(report.passed, "\(report)")
                try await agent.stop()

                // Requests by hand, each with one batch for epoch "raw".
                let url = harness.aggregatorURL
                let own = Self.request(gateway: "gw-auth", sequence: 1, readingsOf: "gw-auth")
                let noToken = try await Self.post(own, token: nil, to: url, http: http)
                #expect(noToken.status == 401 && noToken.wwwAuthenticate == "Bearer", "\(noToken)")
                let unknown = try await Self.post(own, token: "not-a-token-anyone-holds", to: url, http: http)
                #expect(unknown.status == 401, "\(unknown)")
                let othersToken = try await Self.post(own, token: Self.tokenOther, to: url, http: http)
                #expect(othersToken.status == 403 && othersToken.reason.contains("gw-other"), "\(othersToken)")
                let foreignReadings = try await Self.post(Self.request(gateway: "gw-auth", sequence: 1, readingsOf: "gw-other"),
                                                          token: Self.tokenA, to: url, http: http)
                #expect(foreignReadings.status == 422 && foreignReadings.reason.contains("gw-other"), "\(foreignReadings)")
                #expect(try Self.rawRows(harness) == 0, "no refused request wrote a reading")
                let gateways = try await fetchFleet(harness).view.gateways.map(\.gatewayID)
                #expect(gateways == ["gw-auth"], "the registry knows only the gateway that sent in its own name")

                // A new token for gw-auth, without a restart: the old one stops working.
                try TemporaryDirectory.writeSecret("gw-auth \(Self.tokenA2)\ngw-other \(Self.tokenOther)\n", to: harness.gatewayTokenFile)
                try await eventually(timeout: .seconds(20), "the rotated token is read") {
                    try await Self.post(own, token: Self.tokenA2, to: url, http: http).status == 200
                }
                #expect(try await Self.post(Self.request(gateway: "gw-auth", sequence: 2, readingsOf: "gw-auth"), token: Self.tokenA, to: url, http: http).status == 401)
                #expect(try Self.rawRows(harness) == 3)

                // A broken file is logged and the tokens read before stay in force.
                try TemporaryDirectory.writeSecret("gw-auth short\n", to: harness.gatewayTokenFile)
                try await Task.sleep(for: .milliseconds(1200))
                let afterTypo = try await Self.post(Self.request(gateway: "gw-auth", sequence: 2, readingsOf: "gw-auth"), token: Self.tokenA2, to: url, http: http)
                #expect(afterTypo.status == 200, "\(afterTypo)")
                #expect(try Self.rawRows(harness) == 6)

                // The audit log has every request: who, what, and the answer.
                let lines = try Self.auditLines(harness)
                let text = lines.joined(separator: "\n")
                func count(_ fragments: String...) -> Int { lines.filter { line in fragments.allSatisfy { line.contains($0) } }.count }
                // The first refusal (no token) is written; the unknown token, the old one after the
                // rotation and the new one while it was not read yet are the same refusal (an
                // unauthenticated 401) from the same address, whatever the reason's words, so they
                // are a count of repeats when its minute is over (HostileNeighbourTests checks the
                // counting): a client cannot grow the log by varying what it gets wrong.
                #expect(count("\"actor\":\"unauthenticated\"", "\"http\":401", "only with the gateway's token", "\"peer\":\"127.0.0.1\"") == 1)
                #expect(count("\"actor\":\"unauthenticated\"", "\"http\":401") == 1)
                #expect(count("\"actor\":\"gateway:gw-other\"", "\"http\":403") == 1)
                #expect(count("\"actor\":\"gateway:gw-auth\"", "\"http\":422", "\"outcome\":\"rejected\"") == 1)
                #expect(count("\"actor\":\"gateway:gw-auth\"", "\"outcome\":\"accepted\"", "\"batch\":\"gw-auth/raw/") == 2)
                #expect(count("\"kind\":\"operator\"", "\"actor\":\"operator\"", "GET /v1/fleet") >= 1)
                #expect(!text.contains(Self.tokenA) && !text.contains(Self.tokenA2) && !text.contains(Self.tokenOther))
            }
        }
    }

    /// A SyncRequest whose status and batch are `gateway`'s, with three readings credited to `readingsOf`.
    static func request(gateway: String, sequence: UInt64, readingsOf: String) -> Tributary_V1_SyncRequest {
        let now = WallClock.nowMs()
        let readings = (0..<3).map { i in
            Reading(gatewayID: readingsOf, sensorID: "s\(i)", metric: "value", topic: "raw/\(i)", timeMs: now + Int64(i), receivedAtMs: now, value: .double(Double(i)))
        }
        var request = Tributary_V1_SyncRequest()
        request.batch = BatchCodec.encode(identity: BatchIdentity(gatewayID: gateway, epoch: "raw", sequence: sequence), readings: readings, sealedAtMs: now)
        request.status.gatewayID = gateway
        request.status.agentVersion = "test"
        request.status.clockMs = now
        return request
    }

    struct Answer: CustomStringConvertible {
        let status: UInt
        let reason: String
        let wwwAuthenticate: String?
        var description: String { "HTTP \(status): \(reason)" }
    }

    static func post(_ request: Tributary_V1_SyncRequest, token: String?, to url: String, http: HTTPClient,
                     tls: TLSConfiguration? = nil) async throws -> Answer {
        var post = SyncClient.batchRequest(url: url, body: ByteBuffer(bytes: try request.serializedBytes() as [UInt8]), encoding: .identity, token: token)
        post.tlsConfiguration = tls
        let response = try await http.execute(post, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        let ack = try? Tributary_V1_Ack(serializedBytes: Array(buffer: body))
        return Answer(status: response.status.code, reason: ack?.reason ?? "", wwwAuthenticate: response.headers.first(name: "WWW-Authenticate"))
    }

    /// Every line of the aggregator's audit log, oldest day first.
    static func auditLines(_ harness: Harness) throws -> [String] {
        let auditDir = harness.directory.file("aggregator/audit")
        return try FileManager.default.contentsOfDirectory(atPath: auditDir).sorted()
            .map { try String(contentsOfFile: auditDir + "/" + $0, encoding: .utf8) }.joined()
            .split(separator: "\n").map(String.init)
    }

    /// Every reading in a SQLite sink.
    static func rows(inSink path: String) throws -> Int64 {
        let db = try SQLiteDatabase(path: path, readOnly: true)
        defer { db.close() }
        return try db.withConnection { c throws(SQLiteError) in try c.scalar("SELECT count(*) FROM readings")?.int64 ?? 0 }
    }

    /// Readings the hand-made requests wrote.
    static func rawRows(_ harness: Harness) throws -> Int64 {
        let db = try SQLiteDatabase(path: harness.directory.file("aggregator/sink.sqlite"), readOnly: true)
        defer { db.close() }
        return try db.withConnection { c throws(SQLiteError) in try c.scalar("SELECT count(*) FROM readings WHERE batch_epoch = 'raw'")?.int64 ?? 0 }
    }
}
