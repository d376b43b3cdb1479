import Foundation
import Testing
@testable import TributaryRuntime

/// The `process_` figures every exporter gives, from `/proc`.
@Suite struct ProcessMetricsTests {
    /// A stat line whose command holds spaces and parentheses (proc(5) allows both).
    @Test func aStatLineIsReadFieldByField() throws {
        let stat = "4242 (tributary (x) agent) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 150 0 0 20 0 9 0 5000 123456789 2048 18446744073709551615"
        let r = try #require(ProcessMetrics.parse(stat: stat, bootTimeSeconds: 1_700_000_000, ticksPerSecond: 100, pageSize: 4096,
                                                  openFDs: 12, maxFDs: 1024))
        #expect(r.cpuSeconds == 4.0, "(250 + 150) ticks at 100 a second")
        #expect(r.startTimeSeconds == 1_700_000_050, "boot plus 5000 ticks")
        #expect(r.virtualBytes == 123_456_789 && r.residentBytes == 2048 * 4096)
        #expect(ProcessMetrics.parse(stat: "4242 (truncated) S 1", bootTimeSeconds: 0, ticksPerSecond: 100, pageSize: 4096, openFDs: 0, maxFDs: nil) == nil)
        var p = PrometheusText()
        ProcessMetrics.render(into: &p, r)
        #expect(p.text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 4\n"), "\(p.text)")
        #expect(p.text.contains("process_resident_memory_bytes 8388608\n") && p.text.contains("process_open_fds 12\n"))
        #expect(p.text.contains("process_max_fds 1024\n") && p.text.contains("process_start_time_seconds 1700000050\n"))
    }

    /// This process, live: it started within the last day, holds some memory and some files.
    @Test func thisProcess() throws {
        let r = try #require(ProcessMetrics.read())
        let now = Date().timeIntervalSince1970
        #expect(r.startTimeSeconds <= now + 1 && r.startTimeSeconds > now - 86_400, "\(r)")
        #expect(r.residentBytes > 1_000_000 && r.cpuSeconds >= 0 && r.openFDs >= 3, "\(r)")
    }
}
