/// Polls `condition` until it holds; throws after `timeout` (a bound on a hang, never a speed
/// assertion: no test asserts a time).
public func eventually(timeout: Duration = .seconds(60), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestingError("timed out waiting for: \(what)") }
        try await Task.sleep(for: .milliseconds(100))
    }
}
