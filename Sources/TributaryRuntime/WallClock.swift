import Foundation
import Synchronization

/// The wall clock, in the unit readings use. Only for times that are stored or shown (a
/// reading's time, when a batch was sealed, a status's clock): ages, intervals and deadlines
/// use `MonotonicClock`, which a clock step cannot move.
public enum WallClock {
    private static let faultOffsetMs = Atomic<Int64>(0)

    /// ms since the Unix epoch.
    public static func nowMs() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) &+ faultOffsetMs.load(ordering: .relaxed)
    }

    /// Fault injection, for tests only: moves this process's wall clock by `ms` from the
    /// system's, as an NTP step would (the monotonic clock does not move). See
    /// `WallClockFault` in the agent.
    public static func setFaultOffsetMs(_ ms: Int64) {
        faultOffsetMs.store(ms, ordering: .relaxed)
    }
}
