/// Polls `condition` until it holds; throws after `timeout` (a bound on a hang, never a speed
/// assertion: no test asserts a time). An error thrown by `condition` counts as "not yet" (a
/// request timing out on a loaded machine is not the failure being waited for); the last one
/// is reported if the time runs out.
public func eventually(timeout: Duration = .seconds(60), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while true {
        do {
            if try await condition() { return }
            lastError = nil
        } catch {
            lastError = error
        }
        guard ContinuousClock.now < deadline else {
            throw TestingError("timed out waiting for: \(what)" + (lastError.map { " (last error: \($0))" } ?? ""))
        }
        try await Task.sleep(for: .milliseconds(100))
    }
}
