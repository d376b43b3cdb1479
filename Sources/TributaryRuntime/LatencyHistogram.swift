import Synchronization

/// Durations counted into fixed buckets, for a Prometheus histogram. Cheap to record from many
/// tasks at once; the buckets (5 ms to 60 s) cover a sink insert and an agent's whole request.
public final class LatencyHistogram: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var upperBoundsSeconds: [Double]
        /// Per bucket, not cumulative; the last bucket holds what exceeds every bound.
        public var counts: [UInt64]
        public var sumSeconds: Double
        public var count: UInt64 { counts.reduce(0, +) }

        /// Any distribution, for `PrometheusText.histogram` (the names say seconds; the unit is the caller's).
        public init(upperBoundsSeconds: [Double], counts: [UInt64], sumSeconds: Double) {
            self.upperBoundsSeconds = upperBoundsSeconds
            self.counts = counts
            self.sumSeconds = sumSeconds
        }
    }

    public static let defaultBoundsSeconds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private let bounds: [Double]
    private let state: Mutex<(counts: [UInt64], sum: Double)>

    public init(boundsSeconds: [Double] = LatencyHistogram.defaultBoundsSeconds) {
        bounds = boundsSeconds
        state = Mutex(([UInt64](repeating: 0, count: boundsSeconds.count + 1), 0))
    }

    public func record(seconds: Double) {
        let index = bounds.firstIndex { seconds <= $0 } ?? bounds.count
        state.withLock { s in
            s.counts[index] += 1
            s.sum += seconds
        }
    }

    public func record(_ duration: Duration) {
        record(seconds: duration.inSeconds)
    }

    /// Times `body` and records how long it took, whatever it returned or threw.
    public func time<T, E: Error>(_ body: () async throws(E) -> T) async throws(E) -> T {
        let started = ContinuousClock.now
        defer { record(ContinuousClock.now - started) }
        return try await body()
    }

    public var snapshot: Snapshot {
        state.withLock { s in Snapshot(upperBoundsSeconds: bounds, counts: s.counts, sumSeconds: s.sum) }
    }
}
