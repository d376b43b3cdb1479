import Testing
import TributaryRuntime

@Suite struct PrometheusTextTests {
    @Test func familiesLabelsAndEscaping() {
        var p = PrometheusText()
        p.family("tributary_requests_total", .counter, help: "Requests\nby outcome.")
        p.sample("tributary_requests_total", ["outcome": "accepted"], 3)
        p.sample("tributary_requests_total", ["outcome": "odd \"one\"\\\n"], 0)
        p.single("tributary_sink_up", .gauge, help: "Up.", 1)
        p.single("tributary_lag_seconds", .gauge, help: "Lag.", 2.5)
        #expect(p.text == """
            # HELP tributary_requests_total Requests\\nby outcome.
            # TYPE tributary_requests_total counter
            tributary_requests_total{outcome="accepted"} 3
            tributary_requests_total{outcome="odd \\"one\\"\\\\\\n"} 0
            # HELP tributary_sink_up Up.
            # TYPE tributary_sink_up gauge
            tributary_sink_up 1
            # HELP tributary_lag_seconds Lag.
            # TYPE tributary_lag_seconds gauge
            tributary_lag_seconds 2.5

            """)
    }

    @Test func histogramBucketsAreCumulative() {
        let h = LatencyHistogram(boundsSeconds: [0.01, 0.1, 1])
        for s in [0.005, 0.05, 0.05, 0.5, 3] { h.record(seconds: s) }
        var p = PrometheusText()
        p.histogram("tributary_sink_write_seconds", help: "Sink writes.", h.snapshot)
        #expect(p.text == """
            # HELP tributary_sink_write_seconds Sink writes.
            # TYPE tributary_sink_write_seconds histogram
            tributary_sink_write_seconds_bucket{le="0.01"} 1
            tributary_sink_write_seconds_bucket{le="0.1"} 3
            tributary_sink_write_seconds_bucket{le="1"} 4
            tributary_sink_write_seconds_bucket{le="+Inf"} 5
            tributary_sink_write_seconds_sum 3.605
            tributary_sink_write_seconds_count 5

            """)
    }
}
