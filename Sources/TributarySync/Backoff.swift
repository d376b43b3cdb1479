/// Exponential backoff with full jitter: the n-th wait is uniform in [0, min(max, initial * 2^n)].
/// Jitter spreads a fleet that comes back at once.
public struct Backoff: Sendable {
    public let initialMs: Int
    public let maxMs: Int
    public private(set) var failures = 0

    public init(initialMs: Int, maxMs: Int) {
        self.initialMs = initialMs
        self.maxMs = maxMs
    }

    /// The next wait in ms. A server's Retry-After (`floorMs`) is honoured, plus up to half of
    /// it again at random, so a fleet told the same Retry-After does not return in step.
    public mutating func next(floorMs: Int = 0, using generator: inout some RandomNumberGenerator) -> Int {
        let ceiling = min(maxMs, initialMs << min(failures, 30))
        failures += 1
        let jittered = Int.random(in: 0...max(ceiling, 1), using: &generator)
        guard floorMs > 0 else { return jittered }
        return max(jittered, floorMs + Int.random(in: 0...max(floorMs / 2, 1), using: &generator))
    }

    public mutating func next(floorMs: Int = 0) -> Int {
        var generator = SystemRandomNumberGenerator()
        return next(floorMs: floorMs, using: &generator)
    }

    public mutating func reset() { failures = 0 }
}
