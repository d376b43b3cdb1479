import Testing
import TributaryAdminAPI
import TributaryCore
@testable import TributaryCtl

/// The text operators read, rendered from fixed data (`Fixtures`): any change to a screen shows
/// here as a diff to review, snapshot-style.
@Suite struct RenderingTests {
    @Test func status() {
        #expect(FleetRendering.status(Fixtures.fleet, aggregator: "http://10.0.0.5:8470") == """
        aggregator   http://10.0.0.5:8470
        sink         sqlite:/var/lib/tributary-aggregator/sink.sqlite (healthy)
        sink writes  2.5k batches in 900 writes since start (up to 9 batches coalesced in one)
        in flight    3/64 batches, 146.5KiB/64.0MiB toward the sink; 12 refused busy (429) since start
        gateways     3 total, 2 online, 1 stale (silent > 2m00s)
        backlog      48.3k readings
        worst lag    4m12s (gw-dam-07)
        ingest       1.8k/s
        synced       1.3M readings
        quarantined  2 payloads
        dropped      17 readings
        set aside    1 batches refused for good, kept on their gateways
        errors       1 gateway(s) report a last error; see `tributaryctl gateways`

        """)
    }

    @Test func gatewaysTable() {
        #expect(FleetRendering.gatewaysTable(Fixtures.fleet) == """
        GATEWAY        STATE   LAST SEEN  LAG    BACKLOG  INGEST   SYNCED  QUARANTINED  DROPPED  SET ASIDE  SKEW   LAST ERROR
        gw-dam-07      online  3s ago     4m12s  48.2k    1.3k/s   88.0k   2            17       0          +2.4s  aggregator answered 503: sink unavailable: ClickHouse unreac
        gw-harbour-01  online  1s ago     865ms  120      512.4/s  1.2M    0            0        0          -35ms  -
        gw-pump-3      stale   2h03m ago  -      0        0.0/s    5.0k    0            0        1          0ms    -

        """)
    }

    @Test func chainWithProblems() {
        var chain = ChainView(epoch: "0f3c9a1e-77aa-4b", startSequence: 3)
        chain.checkedThrough = 120
        chain.highestSeen = 123
        chain.waiting = 1
        chain.waitingSinceMs = 95_000
        chain.gaps = 1
        chain.missingBatches = 2
        chain.mismatches = 1
        chain.lastProblem = "batches 50 to 51 never arrived"
        chain.lastProblemMs = 40_000
        #expect(FleetRendering.chain(chain, nowMs: 100_000) == """
            epoch 0f3c9a1e-77a: batches 3-120 checked; 1 missing after 120 for 5s (in flight or retried; a gap after 10m); \
            GAPS: 1, 2 batches never arrived; ALTERED: 1 links do not match; last problem: batches 50 to 51 never arrived (1m00s ago)
            """)
    }

    @Test func gatewayDetail() {
        #expect(FleetRendering.gatewayDetail(Fixtures.detail) == """
        gateway      gw-dam-07 (online; agent 0.1.0)
        last seen    3s ago; stale after 2m00s of silence
        last batch   4m20s ago
        broker       connected
        backlog      48.2k readings (buffer file 9.3MiB in use)
        lag          4m12s (oldest unsent reading)
        rates        ingest 1.3k/s, send 0.0/s
        synced       88.0k readings in 40 batches; 3 resends answered duplicate
        losses       17 readings dropped, 2 payloads quarantined, 0 batches set aside
        clock        gateway +2.4s vs the aggregator (±40ms, round trip 80ms)
        last error   aggregator answered 503: sink unavailable: ClickHouse unreachable (7s ago)
        chain        epoch 5f2a: batches 1-40 checked; intact

        recent sync history (newest first):
          WHEN       WHAT       BATCH              READINGS  DETAIL
          3s ago     refused    gw-dam-07/5f2a/41  5.0k      sink unavailable: ClickHouse unreachable
          4m20s ago  accepted   gw-dam-07/5f2a/40  5.0k
          4m22s ago  duplicate  gw-dam-07/5f2a/39  5.0k
          5m00s ago  heartbeat  -                  -

        """)
    }

    /// Five refreshes of history, a 100x14 terminal: header, summary, sparklines, the gateways
    /// most behind first.
    @Test func watchScreen() {
        var history = WatchHistory()
        var view = Fixtures.fleet
        for rate in [0.0, 400, 900, 1700, 1762.4] {
            view.gateways[1].ingestRate = rate - 1250
            view.gateways[0].ingestRate = 1250
            history.add(view)
        }
        let lines = WatchScreen.render(Fixtures.fleet, history: history, aggregator: "http://10.0.0.5:8470", clock: "08:15:02",
                                       intervalSeconds: 2, width: 100, height: 14)
        #expect(lines.allSatisfy { $0.count <= 100 })
        #expect(lines.joined(separator: "\n") == """
        tributary fleet  http://10.0.0.5:8470  08:15:02  every 2s  q: quit
        gateways 3 (2 online, 1 stale)   sink sqlite:/var/lib/tributary-aggregator/sink.sqlite: healthy
        worst lag 4m12s (gw-dam-07)   dropped 17   quarantined 2
        ingest  1.8k/s                                                             ▁▂▄▇█
        backlog 48.3k                                                              █████

        GATEWAY        STATE   LAST SEEN  LAG    BACKLOG  INGEST   SEND   LAST ERROR
        gw-dam-07      online  3s ago     4m12s  48.2k    1.3k/s   0.0/s  aggregator answered 503: sink una…
        gw-harbour-01  online  1s ago     865ms  120      512.4/s  498/s  -
        gw-pump-3      stale   2h03m ago  -      0        0.0/s    0.0/s  -
        """)
    }

    /// A short terminal keeps the header and says how many gateways did not fit.
    @Test func watchScreenTooShort() {
        let lines = WatchScreen.render(Fixtures.fleet, history: WatchHistory(), aggregator: "http://a", clock: "00:00:00",
                                       intervalSeconds: 1, width: 60, height: 9)
        #expect(lines.count == 9)
        #expect(lines.first?.hasPrefix("tributary fleet  http://a") == true)
        #expect(lines[6].hasPrefix("GATEWAY"))
        #expect(lines[7].hasPrefix("gw-dam-07"))
        #expect(lines[8] == "... 2 more (tributaryctl gateways --sort lag)")
        #expect(lines.allSatisfy { $0.count <= 60 })
    }
}
