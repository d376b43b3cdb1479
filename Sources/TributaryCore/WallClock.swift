import Foundation

/// The wall clock, in the unit readings use.
public enum WallClock {
    /// ms since the Unix epoch.
    public static func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }
}
