import Foundation
import Testing
import TributaryCore
import TributaryTesting
import TributaryWire
@testable import TributaryAggregator

@Suite("relay spool")
struct RelaySpoolTests {
    static func identity(_ gateway: String, _ sequence: UInt64) -> BatchIdentity {
        BatchIdentity(gatewayID: gateway, epoch: "e1", sequence: sequence)
    }

    @Test func takesOnceAnswersResendsAndConflictsAndKeepsItsQuota() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let spool = try RelaySpool(path: dir.file("spool.sqlite"))
        defer { spool.close() }
        let batch: [UInt8] = Array(repeating: 7, count: 1000)
        #expect(try spool.take(identity: Self.identity("gw", 1), digest: 1, batch: batch, status: [], readings: 10, receivedMs: 5) == .stored)
        #expect(try spool.take(identity: Self.identity("gw", 1), digest: 1, batch: batch, status: [], readings: 10, receivedMs: 6) == .duplicate)
        #expect(try spool.take(identity: Self.identity("gw", 1), digest: 2, batch: batch, status: [], readings: 10, receivedMs: 6) == .conflict)
        #expect(try spool.take(identity: Self.identity("gw", 2), digest: 3, batch: batch, status: [], readings: 10, receivedMs: 7, maxBytes: 1500) == .full)
        // A resend of what the spool holds is answered duplicate even when it is full.
        #expect(try spool.take(identity: Self.identity("gw", 1), digest: 1, batch: batch, status: [], readings: 10, receivedMs: 8, maxBytes: 1500) == .duplicate)
        #expect(spool.snapshot.batches == 1 && spool.snapshot.bytes == 1000 && spool.snapshot.oldestReceivedMs == 5)
    }

    @Test func whatItHoldsOfAGatewayJoinsTheBacklogPassedUpstream() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let spool = try RelaySpool(path: dir.file("spool.sqlite"))
        defer { spool.close() }
        for (sequence, oldest) in [(1, 1000), (2, 900), (3, 1100)] as [(UInt64, Int64)] {
            _ = try spool.take(identity: Self.identity("gw", sequence), digest: sequence, batch: [1, 2], status: [], readings: 10,
                               receivedMs: 2000, oldestReadingMs: oldest)
        }
        _ = try spool.take(identity: Self.identity("other", 1), digest: 9, batch: [1], status: [], readings: 99, receivedMs: 2000, oldestReadingMs: 1)
        let first = try #require(try spool.oldest(limit: 10).first { $0.identity == Self.identity("gw", 1) })
        let held = try spool.held(of: "gw", excluding: first.id)
        #expect(held == RelaySpool.Held(readings: 20, bytes: 4, oldestReadingMs: 900))

        var status = Tributary_V1_GatewayStatus()
        status.gatewayID = "gw"
        status.backlogReadings = 5
        status.via = ["county"]
        let passed = UpstreamForwarder.passedOn(status, relayID: "city", held: held)
        #expect(passed.via == ["county", "city"] && passed.backlogReadings == 25 && passed.oldestUnsentMs == 900)
        status.oldestUnsentMs = 800
        #expect(UpstreamForwarder.passedOn(status, relayID: "city", held: held).oldestUnsentMs == 800)
        #expect(UpstreamForwarder.passedOn(status, relayID: "city", held: .init()).backlogReadings == 5)
    }

    @Test func setAsideBatchesAreQueuedAgainAtTheNextStart() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var spool = try RelaySpool(path: dir.file("spool.sqlite"))
        _ = try spool.take(identity: Self.identity("gw", 1), digest: 1, batch: [1], status: [], readings: 3, receivedMs: 1)
        let entry = try #require(try spool.oldest(limit: 1).first)
        try spool.setAside(entry, reason: "loop")
        let waiting = try spool.oldest(limit: 1)
        #expect(spool.snapshot.setAside == 1 && spool.snapshot.batches == 0 && waiting.isEmpty)
        spool.close()
        spool = try RelaySpool(path: dir.file("spool.sqlite"))
        defer { spool.close() }
        #expect(spool.requeuedAtStart == 1 && spool.snapshot.setAside == 0 && spool.snapshot.batches == 1)
        try spool.forwarded(try #require(try spool.oldest(limit: 1).first))
        #expect(spool.snapshot.batches == 0 && spool.snapshot.forwardedReadings == 3)
    }
}
