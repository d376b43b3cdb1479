import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TributaryCore
import TributaryCtl
import TributaryRuntime
import TributarySimulator
import TributaryTesting
import TributaryWire

/// Issue 25: what a client with or without a valid token, and a local user, can do to the
/// aggregator, each against the real executable.
@Suite("hostile gateways and neighbours", .serialized)
struct HostileNeighbourTests {
    static let token = "token-of-gw-hostile-0123456789ab"

    /// A harness whose aggregator wants gateway tokens (gw-hostile's).
    static func harness() async throws -> ProcessHarness {
        let dir = try TemporaryDirectory()
        try dir.writeSecret("gateway-tokens", "gw-hostile \(token)\n")
        return try await ProcessHarness(gatewayID: "gw-hostile", aggregatorConfig: ["gateway_auth:", "  token_file: \(dir.file("gateway-tokens"))"],
                                        directory: dir)
    }

    static var url: (ProcessHarness) -> String { { "http://127.0.0.1:\($0.httpPort)" } }

    /// Item 2: 3,000 wrong-token requests in a row wrote 3,000 audit lines (about 1 MB in a
    /// second, 89 GB a day from one client). Now one line, and the count when the aggregator
    /// stops (or the minute is over), with the peer address.
    @Test("a flood of refused requests writes one audit line and a count, with the peer address")
    func auditFloodIsCounted() async throws {
        let harness = try await Self.harness()
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let request = GatewayAuthTests.request(gateway: "gw-hostile", sequence: 1, readingsOf: "gw-hostile")
        for _ in 0..<3000 {
            let answer = try await GatewayAuthTests.post(request, token: "wrong-token-0123456789abcdef", to: Self.url(harness), http: .shared)
            #expect(answer.status == 401)
        }
        // The admin API without a token, a new path each time: one kind of refusal too.
        for i in 0..<2000 {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: Self.url(harness) + "/v1/gateways/gw-\(i)"), timeout: .seconds(10))
            #expect(response.status.code == 401)
        }
        let auditDir = harness.dir.file("aggregator/audit")
        let size = try FileManager.default.contentsOfDirectory(atPath: auditDir)
            .reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: auditDir + "/" + $1)[.size] as? Int) ?? 0) }
        #expect(size < 3000, "the audit log holds \(size) bytes after 5,000 refusals")
        #expect(ProcessHarness.exitCode(await aggregator.stop(signal: SIGTERM)) == 0)
        let lines = try FileManager.default.contentsOfDirectory(atPath: auditDir).flatMap {
            try String(contentsOfFile: auditDir + "/" + $0, encoding: .utf8).split(separator: "\n")
        }
        // A line and a count per kind (batch, operator) per minute the flood lasted.
        #expect(lines.count >= 4 && lines.count <= 12, "\(lines)")
        #expect(lines.allSatisfy { $0.contains("\"peer\":\"127.0.0.1\"") && $0.contains("\"http\":401") }, "\(lines)")
        let repeats = lines.compactMap { line -> Int? in
            guard let range = line.range(of: "\"repeats\":") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(repeats.reduce(0, +) + (lines.count - repeats.count) == 5000, "every refusal is accounted for: \(lines)")
        await harness.broker.stop()
    }

    /// Items 3, 4 and 7: an epoch carrying an escape sequence and a forged log line; a status
    /// whose last error forges a row of `tributaryctl gateways` with a right-to-left override;
    /// a batch whose gateway is a canonically equivalent spelling of its status's.
    @Test("client text cannot forge log lines or tributaryctl rows, and ids are compared byte for byte")
    func clientTextStaysInItsPlace() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-text")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let forged = "\u{1B}[2J\r\n2026-01-01 info x: FORGED line"
        var request = GatewayAuthTests.request(gateway: "gw-text", sequence: 1, readingsOf: "gw-text")
        request.batch.id.epoch = "e" + forged
        var answer = try await GatewayAuthTests.post(request, token: nil, to: Self.url(harness), http: .shared)
        #expect(answer.status == 400 && answer.reason.contains("epoch holds control characters"), "\(answer)")
        // A gateway id with a forged log line inside its label value, and a forged last error.
        request = GatewayAuthTests.request(gateway: "gw-text", sequence: 1, readingsOf: "gw-text")
        request.status.lastError = "fine\ngw-fake    online     now  \u{202E}enil-ni"
        request.status.lastErrorMs = WallClock.nowMs()
        answer = try await GatewayAuthTests.post(request, token: nil, to: Self.url(harness), http: .shared)
        #expect(answer.status == 200, "\(answer)")
        // Canonically equal, not the same bytes: U+212B ANGSTROM SIGN for U+00C5.
        var twin = GatewayAuthTests.request(gateway: "gw\u{00C5}", sequence: 1, readingsOf: "gw\u{00C5}")
        twin.batch.id.gatewayID = "gw\u{212B}"
        answer = try await GatewayAuthTests.post(twin, token: nil, to: Self.url(harness), http: .shared)
        #expect(answer.status == 400 && answer.reason.contains("batch belongs to"), "\(answer)")

        let log = try String(contentsOfFile: harness.dir.file("aggregator.log"), encoding: .utf8)
        #expect(!log.utf8.contains(0x1B) && !log.contains("\r"), "no raw escape or carriage return in the log")
        #expect(!log.split(separator: "\n").contains { $0.contains("FORGED line") && !$0.contains("batch refused") && !$0.contains("request refused") })
        let ctl = try ProcessHarness.executable("tributaryctl")
        let token = try harness.adminToken
        for command in [["gateways"], ["gateway", "gw-text"]] {
            let (code, output) = try await ProcessHarness.run(ctl, command + ["--aggregator", Self.url(harness), "--token", token], in: harness.dir.path)
            #expect(code == 0, "\(output)")
            #expect(!output.split(separator: "\n").contains { $0.hasPrefix("gw-fake") }, "a forged row: \(output)")
            #expect(!output.contains("\u{202E}"), "a right-to-left override reached the terminal: \(output)")
        }
        await harness.stop(aggregator)
    }

    /// Items 5 and 6: files others can read; an operator token planted in the data directory.
    @Test("data files are the service user's alone whatever the umask; a planted operator token is refused")
    func filesArePrivateAndAPlantedTokenIsRefused() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-files", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let previous = umask(0o022)
        defer { umask(previous) }
        let aggregator = try await harness.startAggregator()
        let agent = try await harness.startAgent()
        #expect(try await harness.verifyWhenComplete(try await harness.publish(50, rate: 100).value).passed)
        await harness.stop(agent, aggregator)
        func mode(_ path: String) -> mode_t? {
            var info = stat()
            return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
        }
        for dir in ["aggregator", "agent", "aggregator/audit"] {
            #expect(mode(harness.dir.file(dir)) == 0o700, "\(dir): \(String(mode(harness.dir.file(dir)) ?? 0, radix: 8))")
        }
        for file in ["aggregator/registry.sqlite", "aggregator/sink.sqlite", "aggregator/admin-token", "agent/buffer.sqlite",
                     "agent/buffer.sqlite-wal", "agent/buffer.sqlite-shm", "agent/tributary-agent.lock"] {
            guard let m = mode(harness.dir.file(file)) else { continue }  // a WAL may be checkpointed away
            #expect(m & 0o077 == 0, "\(file): \(String(m, radix: 8))")
        }

        // A token planted where the aggregator keeps its own: a symbolic link, then a file of
        // another user, then one every user can read. Each stops the aggregator, naming why.
        let tokenPath = harness.dir.file("aggregator/admin-token")
        try FileManager.default.removeItem(atPath: tokenPath)
        try "planted-token-0123456789abcdef\n".write(toFile: harness.dir.file("planted"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: tokenPath, withDestinationPath: harness.dir.file("planted"))
        for (setup, expected) in [({}, "is a symbolic link"),
                                  ({ try? FileManager.default.removeItem(atPath: tokenPath)
                                     try? "planted-token-0123456789abcdef\n".write(toFile: tokenPath, atomically: false, encoding: .utf8)
                                     chmod(tokenPath, 0o600)
                                     chown(tokenPath, 65534, 65534) }, "belongs to uid 65534"),
                                  ({ chown(tokenPath, getuid(), getgid())
                                     chmod(tokenPath, 0o644) }, "has mode 644")] as [(() -> Void, String)] {
            setup()
            let log = harness.dir.file("refused-\(expected.count).log")
            let refused = try ChildProcess(executable: try ProcessHarness.executable("tributary-aggregator"),
                                           arguments: ["--config", harness.dir.file("aggregator.yaml")], logFile: log)
            // A bound on a hang (an aggregator that took the token serves until stopped), not a speed.
            try? await eventually(timeout: .seconds(20), "the aggregator exits") { !refused.isRunning }
            let status = refused.exitStatus
            if status == nil { await refused.stop(signal: SIGKILL) }
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(status.map(ProcessHarness.exitCode) == 1 && output.contains(expected), "\(expected): \(output)")
        }
    }

    /// Item 1: a 1,107-byte request with a 1 MB epoch grew the SQLite sink by 608 MB; 100
    /// readings with 128 labels of 4,000 bytes by 103 MB. Identifiers are bounded, a series'
    /// description is stored once, and a request that would cost far more than it carries is
    /// refused (413) with the reason.
    @Test("requests that would make the sink store far more than they carry are refused; an honest one is stored compactly")
    func storageIsBoundedByWhatARequestCarries() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-big")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        func post(_ request: Tributary_V1_SyncRequest) async throws -> GatewayAuthTests.Answer {
            let body = Compression.compress(try request.serializedBytes(), encoding: .zstd)
            var http = SyncClientRequest.make(url: Self.url(harness), body: body, encoding: .zstd)
            http.headers.add(name: "X-Test", value: "amplification")
            let response = try await HTTPClient.shared.execute(http, timeout: .seconds(60))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            let ack = try? Tributary_V1_Ack(serializedBytes: Array(buffer: bytes))
            return .init(status: response.status.code, reason: ack?.reason ?? "", wwwAuthenticate: nil)
        }
        func request(epoch: String = "e", readings: [Reading]) -> Tributary_V1_SyncRequest {
            var request = Tributary_V1_SyncRequest()
            request.batch = BatchCodec.encode(identity: BatchIdentity(gatewayID: "gw-big", epoch: epoch, sequence: 1), readings: readings, sealedAtMs: 0)
            request.status.gatewayID = "gw-big"
            request.status.clockMs = WallClock.nowMs()
            return request
        }
        func readings(_ count: Int, labels: [String: String] = [:], text: String? = nil) -> [Reading] {
            (0..<count).map { i in
                Reading(gatewayID: "gw-big", sensorID: "s", metric: "m", topic: "t", timeMs: 1_790_000_000_000 + Int64(i),
                        receivedAtMs: 1_790_000_000_000 + Int64(i), value: text.map { .text($0) } ?? .integer(Int64(i % 7)), labels: labels)
            }
        }
        func sinkBytes() -> Int {
            ["", "-wal"].reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: harness.sinkPath + $1)[.size] as? Int) ?? 0) }
        }
        let before = sinkBytes()
        var answer = try await post(request(epoch: String(repeating: "e", count: 1 << 20), readings: readings(300)))
        #expect(answer.status == 400 && answer.reason.contains("epoch has 1048576 bytes"), "\(answer)")
        answer = try await post(request(readings: readings(100, labels: Dictionary(uniqueKeysWithValues: (0..<128).map { ("k\($0)", String(repeating: "v", count: 4000)) }))))
        #expect(answer.status == 400 && answer.reason.contains("has 4000 bytes; the limit is 512"), "\(answer)")
        answer = try await post(request(readings: readings(100_000, text: String(repeating: "t", count: 4000))))
        #expect(answer.status == 413 && answer.reason.contains("too large for what it carries"), "\(answer)")
        #expect(sinkBytes() - before < 200_000, "refused requests wrote nothing much")

        // Honest and heavy: 5,000 readings of a series with 8 labels of 400 bytes (3.3 KB of
        // description). Version 1 of the sink stored 16.5 MB of it; now the description once.
        let labels = Dictionary(uniqueKeysWithValues: (0..<8).map { ("label\($0)", String(repeating: "v", count: 400)) })
        answer = try await post(request(readings: readings(5000, labels: labels)))
        #expect(answer.status == 200, "\(answer)")
        #expect(try GatewayAuthTests.rows(inSink: harness.sinkPath) == 5000)
        #expect(sinkBytes() - before < 2_000_000, "the sink grew \(sinkBytes() - before) bytes")
        await harness.stop(aggregator)
    }

    /// Without gateway tokens any client can name any gateway: 52,000 made-up ids grew the
    /// registry to 73 MB and the fleet view to 60 MB, took the aggregator to 444 MB and held an
    /// honest batch 18 s. The registry now holds at most `limits.max_gateways`.
    @Test("a new gateway past limits.max_gateways is refused with 503 and its reason; known ones go on")
    func theRegistryIsBounded() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-0", aggregatorConfig: ["limits:", "  max_gateways: 3"])
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        for i in 0..<5 {
            let answer = try await GatewayAuthTests.post(GatewayAuthTests.request(gateway: "gw-\(i)", sequence: 1, readingsOf: "gw-\(i)"),
                                                         token: nil, to: Self.url(harness), http: .shared)
            if i < 3 {
                #expect(answer.status == 200, "\(answer)")
            } else {
                #expect(answer.status == 503 && answer.reason.contains("limits.max_gateways"), "\(answer)")
            }
        }
        let again = try await GatewayAuthTests.post(GatewayAuthTests.request(gateway: "gw-1", sequence: 2, readingsOf: "gw-1"),
                                                    token: nil, to: Self.url(harness), http: .shared)
        #expect(again.status == 200, "\(again)")
        let fleet = try await harness.fleet()
        #expect(fleet.gateways.count == 3)
        // Not in the list, but not hidden: the fleet view and `tributaryctl status` count them.
        #expect(fleet.admission.newGatewaysRefused == 2)
        #expect(FleetRendering.status(fleet, aggregator: "a").contains("refused      2 requests from gateways not shown here"))
        #expect(try GatewayAuthTests.rows(inSink: harness.sinkPath) == 4 * 3, "nothing of the refused gateways was written")
        await harness.stop(aggregator)
    }
}

/// A batch request as the agent's sync client sends it, for bodies made by hand.
enum SyncClientRequest {
    static func make(url: String, body: [UInt8], encoding: ContentEncoding) -> HTTPClientRequest {
        var http = HTTPClientRequest(url: url + WireProtocol.batchesPath)
        http.method = .POST
        http.headers.add(name: "Content-Type", value: WireProtocol.protobufContentType)
        if encoding != .identity { http.headers.add(name: "Content-Encoding", value: encoding.rawValue) }
        http.body = .bytes(ByteBuffer(bytes: body))
        return http
    }
}
