import TributaryAdminAPI
import TributaryCore

/// A fleet at a fixed instant: one gateway caught up, one behind with losses and an error, one
/// stale. Every rendering test starts from it, so its figures are the snapshot's inputs.
enum Fixtures {
    static let nowMs: Int64 = 1_795_000_000_000

    static var fleet: FleetView {
        var caughtUp = GatewayView(gatewayID: "gw-harbour-01")
        caughtUp.lastSeenMs = nowMs - 1_200
        caughtUp.agentVersion = "0.1.0"
        caughtUp.brokerConnected = true
        caughtUp.backlogReadings = 120
        caughtUp.backlogBytes = 48_000
        caughtUp.oldestUnsentMs = nowMs - 900
        caughtUp.readingsSynced = 1_234_567
        caughtUp.batchesSynced = 2_469
        caughtUp.ingestRate = 512.4
        caughtUp.sendRate = 498
        caughtUp.clockSkewMs = -35
        caughtUp.roundTripMs = 4
        caughtUp.lastBatchMs = nowMs - 1_200

        var behind = GatewayView(gatewayID: "gw-dam-07")
        behind.lastSeenMs = nowMs - 3_000
        behind.agentVersion = "0.1.0"
        behind.brokerConnected = true
        behind.backlogReadings = 48_210
        behind.backlogBytes = 9_800_000
        behind.oldestUnsentMs = nowMs - 250_000
        behind.readingsSynced = 88_000
        behind.batchesSynced = 40
        behind.duplicateBatches = 3
        behind.droppedTotal = 17
        behind.quarantinedTotal = 2
        behind.ingestRate = 1_250
        behind.sendRate = 0
        behind.lastError = "aggregator answered 503: sink unavailable: ClickHouse unreachable"
        behind.lastErrorMs = nowMs - 5_000
        behind.clockSkewMs = 2_400
        behind.roundTripMs = 80
        behind.lastBatchMs = nowMs - 260_000
        var chain = ChainView(epoch: "5f2a", startSequence: 1)
        chain.checkedThrough = 40
        chain.highestSeen = 40
        behind.chain = chain

        var silent = GatewayView(gatewayID: "gw-pump-3")
        silent.lastSeenMs = nowMs - 7_380_000
        silent.stale = true
        silent.agentVersion = "0.1.0"
        silent.backlogReadings = 0
        silent.readingsSynced = 5_000
        silent.setAsideBatches = 1
        silent.lastBatchMs = nowMs - 7_380_000

        var admission = AdmissionStats()
        admission.maxInFlightBatches = 64
        admission.maxInFlightBytes = 64 << 20
        admission.inFlightBatches = 3
        admission.inFlightBytes = 150_000
        admission.busyRefusals = 12
        var writes = SinkWriteStats()
        writes.writes = 900
        writes.batches = 2_509
        writes.readings = 1_327_567
        writes.largestWriteBatches = 9
        return FleetView(generatedAtMs: nowMs, staleAfterSeconds: 120, sink: "sqlite:/var/lib/tributary-aggregator/sink.sqlite",
                         admission: admission, sinkWrites: writes, gateways: [behind, caughtUp, silent])
    }

    static var detail: GatewayDetail {
        let gateway = fleet.gateways[0]
        let history = [
            SyncEvent(atMs: nowMs - 3_000, kind: .refused, batch: "gw-dam-07/5f2a/41", readings: 5000,
                      detail: "sink unavailable: ClickHouse unreachable"),
            SyncEvent(atMs: nowMs - 260_000, kind: .accepted, batch: "gw-dam-07/5f2a/40", readings: 5000),
            SyncEvent(atMs: nowMs - 262_000, kind: .duplicate, batch: "gw-dam-07/5f2a/39", readings: 5000),
            SyncEvent(atMs: nowMs - 300_000, kind: .heartbeat),
        ]
        return GatewayDetail(generatedAtMs: nowMs, staleAfterSeconds: 120, gateway: gateway, history: history)
    }
}
