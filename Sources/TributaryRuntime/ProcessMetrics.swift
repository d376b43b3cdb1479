import Foundation

/// The process figures every Prometheus exporter gives (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
/// `process_max_fds`, `process_start_time_seconds`), read from `/proc/self` as client_golang
/// and prometheus_client do, so an operator watches the agent's CPU and memory on a real gateway
/// with the dashboards and alerts they already have. Absent where `/proc` is not (then nothing
/// is written).
public enum ProcessMetrics {
    public struct Reading: Sendable, Equatable {
        public var cpuSeconds: Double
        public var residentBytes: Double
        public var virtualBytes: Double
        public var openFDs: Int
        public var maxFDs: Int?
        public var startTimeSeconds: Double
    }

    /// This process now; nil without a readable `/proc/self/stat`.
    public static func read() -> Reading? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let bootTime = bootTimeSeconds() else { return nil }
        let openFDs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count).map { $0 - 1 } ?? 0  // less the one reading it
        return parse(stat: stat, bootTimeSeconds: bootTime, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK))),
                     pageSize: Double(sysconf(Int32(_SC_PAGESIZE))), openFDs: openFDs, maxFDs: maxOpenFiles())
    }

    /// The figures of a `/proc/PID/stat` line (proc(5)): utime and stime (fields 14, 15) in
    /// ticks, starttime (22) in ticks after boot, vsize (23) in bytes, rss (24) in pages.
    static func parse(stat: String, bootTimeSeconds: Double, ticksPerSecond: Double, pageSize: Double, openFDs: Int, maxFDs: Int?) -> Reading? {
        // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state).
        guard fields.count > 21, let utime = Double(fields[11]), let stime = Double(fields[12]), let start = Double(fields[19]),
              let vsize = Double(fields[20]), let rss = Double(fields[21]), ticksPerSecond > 0 else { return nil }
        return Reading(cpuSeconds: (utime + stime) / ticksPerSecond, residentBytes: rss * pageSize, virtualBytes: vsize,
                       openFDs: openFDs, maxFDs: maxFDs, startTimeSeconds: bootTimeSeconds + start / ticksPerSecond)
    }

    /// Writes the `process_` families into `p`.
    public static func render(into p: inout PrometheusText, _ reading: Reading? = read()) {
        guard let r = reading else { return }
        p.single("process_cpu_seconds_total", .counter, help: "Total user and system CPU time spent in seconds.", r.cpuSeconds)
        p.single("process_resident_memory_bytes", .gauge, help: "Resident memory size in bytes.", r.residentBytes)
        p.single("process_virtual_memory_bytes", .gauge, help: "Virtual memory size in bytes.", r.virtualBytes)
        p.single("process_open_fds", .gauge, help: "Number of open file descriptors.", Double(r.openFDs))
        if let max = r.maxFDs { p.single("process_max_fds", .gauge, help: "Maximum number of open file descriptors.", Double(max)) }
        p.single("process_start_time_seconds", .gauge, help: "Start time of the process since unix epoch in seconds.", r.startTimeSeconds)
    }

    private static func bootTimeSeconds() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }) else { return nil }
        return Double(line.dropFirst("btime ".count).trimmingCharacters(in: .whitespaces))
    }

    private static func maxOpenFiles() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int.max) else { return nil }
        return Int(limit.rlim_cur)
    }
}
