import Synchronization

/// At most `permits` request bodies decompressed and decoded at once. Each may take up to
/// about twice `max_decompressed_bytes` while it is decoded, so the gate, not the number of
/// cores or of requests in flight, bounds that memory. Waiters go in arrival order.
final class DecodeGate: Sendable {
    private struct State {
        var free: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(permits: Int) {
        state = Mutex(State(free: max(1, permits)))
    }

    func run<T, E: Error>(_ body: () throws(E) -> T) async throws(E) -> T {
        await acquire()
        defer { release() }
        return try body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { s in
                guard s.free > 0 else {
                    s.waiting.append(continuation)
                    return false
                }
                s.free -= 1
                return true
            }
            if admitted { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard !s.waiting.isEmpty else {
                s.free += 1
                return nil
            }
            return s.waiting.removeFirst()
        }
        next?.resume()
    }
}
