import Testing
import TributarySync

@Suite("retry backoff")
struct BackoffTests {
    @Test func fullJitterGrowsToTheCapAndHonoursRetryAfter() {
        var backoff = Backoff(initialMs: 100, maxMs: 1000)
        var generator = SystemRandomNumberGenerator()
        for attempt in 0..<10 {
            let wait = backoff.next(using: &generator)
            #expect(wait >= 0 && wait <= min(1000, 100 << attempt))
        }
        // Retry-After is a floor, spread by up to half again so a fleet does not return in step.
        let waits = (0..<200).map { _ in backoff.next(floorMs: 5000, using: &generator) }
        #expect(waits.allSatisfy { (5000...7500).contains($0) })
        #expect(Set(waits).count > 1)
        backoff.reset()
        #expect(backoff.failures == 0)
    }
}

@Suite("in-flight window")
struct InFlightWindowTests {
    @Test func growsByOneAndHalvesWithinItsLimit() {
        var window = InFlightWindow(limit: 5)
        #expect(window.size == 1)
        for _ in 0..<10 { window.acknowledgedRound() }
        #expect(window.size == 5)
        window.congestedRound()
        #expect(window.size == 2)
        window.congestedRound()
        window.congestedRound()
        #expect(window.size == 1)
    }
}
