import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TributaryAdminAPI
import TributaryBuffer
import TributaryCore
import TributaryCrypto
import TributaryCtl
import TributaryMQTT
import TributaryRuntime
import TributarySimulator
import TributaryTesting
import TributaryWire

/// The batches' hash chain, end to end: a real agent's batches arrive intact and checked; a
/// batch held back shows as missing, and one altered on the way shows as a mismatch, in the
/// fleet view and in `tributaryctl gateway ID`.
@Suite("provenance chain")
struct ProvenanceTests {
    @Test("a real agent's chain is checked whole; a batch held back is missing, an altered one is a mismatch")
    func chainShowsMissingAndAlteredBatches() async throws {
        try await withHarness() { harness in
            try await withHTTPClient(HTTPClient(eventLoopGroupProvider: .singleton)) { http in
                let agent = try await harness.startAgent(try harness.agentConfig(gatewayID: "gw-chain"))
                let report = try await harness.publishAndVerify(gatewayID: "gw-chain", count: 1500, rate: 1000, seed: 9)
                #expect(report.passed, "\(report)")
                try await agent.stop()
                let delivered = try #require(try await fetchFleet(harness).view.gateways.first { $0.gatewayID == "gw-chain" })
                let chain = try #require(delivered.chain)
                #expect(chain.startSequence == 1 && chain.checkedThrough == delivered.batchesSynced && chain.highestSeen == chain.checkedThrough)
                #expect(chain.intact && chain.waiting == 0, "\(chain)")

                // Batches sealed by the agent's own buffer code for another gateway, sent by hand.
                let dir = try TemporaryDirectory()
                defer { dir.remove() }
                let buffer = try BufferStore(path: dir.file("buffer.sqlite"), gatewayID: "gw-tamper")
                let now = WallClock.nowMs()
                try buffer.append((0..<40).map { i in
                    Reading(gatewayID: "gw-tamper", sensorID: "s\(i % 4)", metric: "t", topic: "t/\(i % 4)", timeMs: now + Int64(i),
                            receivedAtMs: now + Int64(i), value: .double(Double(i)))
                }, quarantined: [])
                _ = try buffer.sealDueBatches(maxReadings: 10, maxAgeMs: 0)
                let batches = try buffer.claimBatches(limit: 4).map { try Tributary_V1_Batch(serializedBytes: $0.payload) }
                buffer.close()
                #expect(batches.count == 4)
                func send(_ batch: Tributary_V1_Batch) async throws {
                    var request = Tributary_V1_SyncRequest()
                    request.batch = batch
                    request.status.gatewayID = "gw-tamper"
                    request.status.agentVersion = "test"
                    request.status.clockMs = WallClock.nowMs()
                    let answer = try await GatewayAuthTests.post(request, token: nil, to: harness.aggregatorURL, http: http)
                    #expect(answer.status == 200, "\(answer)")
                }
                func tamperedChain() async throws -> ChainView? {
                    try await fetchFleet(harness).view.gateways.first { $0.gatewayID == "gw-tamper" }?.chain
                }

                // Batch 2 held back: 1 is checked, 3 waits for it.
                try await send(batches[0])
                try await send(batches[2])
                var seen = try #require(try await tamperedChain())
                #expect(seen.checkedThrough == 1 && seen.highestSeen == 3 && seen.waiting == 1 && seen.mismatches == 0, "\(seen)")

                // Batch 2 arrives altered (one value changed): batch 3 names the original, so the link breaks.
                var altered = batches[1]
                if altered.series[0].decimalDeltas.isEmpty { altered.series[0].doubles[0] += 1 } else { altered.series[0].decimalDeltas[0] += 1 }
                try await send(altered)
                try await send(batches[3])
                seen = try #require(try await tamperedChain())
                #expect(seen.checkedThrough == 4 && seen.waiting == 0 && seen.mismatches == 1 && seen.lastProblem.contains("batch 3"), "\(seen)")

                // What an operator sees.
                let token = try String(contentsOfFile: harness.directory.file("aggregator/admin-token"), encoding: .utf8)
                let client = FleetClient(aggregator: harness.aggregatorURL, token: token.trimmingCharacters(in: .whitespacesAndNewlines))
                let text = FleetRendering.gatewayDetail(try await client.gateway("gw-tamper").detail)
                #expect(text.contains("batches 1-4 checked") && text.contains("ALTERED: 1"), "\(text)")
                let intactText = FleetRendering.gatewayDetail(try await client.gateway("gw-chain").detail)
                #expect(intactText.contains("intact"), "\(intactText)")
                let summary = FleetRendering.status(try await client.fleet().view, aggregator: harness.aggregatorURL)
                #expect(summary.contains("provenance   1 gateway(s)") && summary.contains("gw-tamper"), "\(summary)")
            }
        }
    }

    /// Issue 23, item 1: a gap of three batches declared (64 batches past it), then its batches
    /// late, middle first. The aggregator trapped on `gaps -= 1` after the sink committed batch 4,
    /// and again on every resend of it: every gateway stalled. Against the real executable.
    @Test("late batches of a declared gap, middle first, are taken and the aggregator lives on")
    func lateBatchesAfterADeclaredGap() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-late")
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        let http = HTTPClient.shared
        let batches = try Self.sealedBatches(gatewayID: "gw-late", count: 69, in: harness.dir)
        let url = "http://127.0.0.1:\(harness.httpPort)"
        for sequence in [1] + Array(5...69) + [3, 2, 4] {
            let answer = try await GatewayAuthTests.post(Self.request(batches[sequence - 1]), token: nil, to: url, http: http)
            #expect(answer.status == 200, "batch \(sequence): \(answer)")
        }
        // The resend that used to trap it again, then a look from the operator's side.
        let resend = try await GatewayAuthTests.post(Self.request(batches[3]), token: nil, to: url, http: http)
        #expect(resend.status == 200 && aggregator.isRunning, "\(resend)\n\(ProcessHarness.tail(harness.dir.file("aggregator.log")))")
        let chain = try #require(try await harness.fleet().gateways.first { $0.gatewayID == "gw-late" }?.chain)
        #expect(chain.gaps == 0 && chain.missingBatches == 0 && chain.checkedThrough == 69 && chain.mismatches == 0, "\(chain)")
        #expect(try GatewayAuthTests.rows(inSink: harness.sinkPath) == 69 * 5)
        await harness.stop(aggregator)
    }

    /// `count` batches of five readings for `gatewayID`, sealed and chained by the agent's own
    /// buffer code, in sequence order.
    static func sealedBatches(gatewayID: String, count: Int, in dir: TemporaryDirectory) throws -> [Tributary_V1_Batch] {
        let buffer = try BufferStore(path: dir.file("sealer-\(gatewayID).sqlite"), gatewayID: gatewayID)
        defer { buffer.close() }
        let now = WallClock.nowMs()
        try buffer.append((0..<count * 5).map { i in
            Reading(gatewayID: gatewayID, sensorID: "s\(i % 5)", metric: "t", topic: "t/\(i % 5)", timeMs: now + Int64(i),
                    receivedAtMs: now + Int64(i), value: .double(Double(i)))
        }, quarantined: [])
        _ = try buffer.sealDueBatches(maxReadings: 5, maxAgeMs: 0)
        return try buffer.claimBatches(limit: count).map { try Tributary_V1_Batch(serializedBytes: $0.payload) }
    }

    /// A batch with the status its gateway would send.
    static func request(_ batch: Tributary_V1_Batch) -> Tributary_V1_SyncRequest {
        var request = Tributary_V1_SyncRequest()
        request.batch = batch
        request.status.gatewayID = batch.id.gatewayID
        request.status.agentVersion = "test"
        request.status.clockMs = WallClock.nowMs()
        return request
    }
}
