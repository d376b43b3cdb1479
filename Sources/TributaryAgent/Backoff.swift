/// Exponential backoff with full jitter: the n-th wait is uniform in [0, min(max, initial * 2^n)].
/// Jitter spreads a fleet that comes back at once.
struct Backoff {
    let initialMs: Int
    let maxMs: Int
    private(set) var failures = 0

    init(initialMs: Int, maxMs: Int) {
        self.initialMs = initialMs
        self.maxMs = maxMs
    }

    /// The next wait in ms; at least `floorMs` (a server's Retry-After).
    mutating func next(floorMs: Int = 0, using generator: inout some RandomNumberGenerator) -> Int {
        let ceiling = min(maxMs, initialMs << min(failures, 30))
        failures += 1
        return max(floorMs, Int.random(in: 0...max(ceiling, 1), using: &generator))
    }

    mutating func next(floorMs: Int = 0) -> Int {
        var generator = SystemRandomNumberGenerator()
        return next(floorMs: floorMs, using: &generator)
    }

    mutating func reset() { failures = 0 }
}
