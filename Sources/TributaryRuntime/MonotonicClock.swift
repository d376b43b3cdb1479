#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Time that only moves forward, whatever happens to the wall clock (an NTP step, `date -s`,
/// a gateway that boots in 1970 and learns the date later). Every age, interval and deadline
/// is measured with it; wall time (`WallClock`) is only for the times stored with readings.
/// Its zero is arbitrary (the machine's boot), so its values mean nothing across processes.
public enum MonotonicClock {
    public static func nowNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    public static func nowMs() -> Int64 { Int64(nowNanoseconds() / 1_000_000) }
}
