import Synchronization

/// Lets one log line of a kind through per interval and counts those held back, so a client
/// sending thousands of bad requests (or a sink down under a full fleet) writes a line every
/// few seconds, not one per request. The audit log keeps every request apart.
final class LogThrottle: Sendable {
    private let interval: Duration
    private let state = Mutex<[String: (last: ContinuousClock.Instant, held: Int)]>([:])

    init(interval: Duration = .seconds(10)) {
        self.interval = interval
    }

    /// Nil: hold this line back. Otherwise let it through, with how many of its kind were held
    /// back since the last one. `kind` must come from a small set (a status code, a name), never
    /// from what a client sent.
    func admit(_ kind: String) -> Int? {
        let now = ContinuousClock.now
        return state.withLock { lines in
            if let seen = lines[kind], now - seen.last < interval {
                lines[kind] = (seen.last, seen.held + 1)
                return nil
            }
            let held = lines[kind]?.held ?? 0
            lines[kind] = (now, 0)
            return held
        }
    }
}
