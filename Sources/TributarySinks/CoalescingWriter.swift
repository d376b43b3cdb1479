import Synchronization
import TributaryAdminAPI
import TributaryCore

/// Funnels concurrent sink writes into one writer that takes everything queued at once, so
/// when the sink is the bottleneck, batches that waited are written together in one larger
/// insert. Nothing waits on purpose: a lone batch on an idle sink is written at once. Every
/// caller gets its own batch's result only after the write that carried it has committed.
final class CoalescingWriter: Sendable {
    typealias Outcome = Result<SinkWriteResult, SinkError>
    /// Writes a group of batches as one, returning one outcome per batch, in order.
    typealias Flush = @Sendable ([IncomingBatch]) async -> [Outcome]

    private struct Waiting {
        let batch: IncomingBatch
        let continuation: CheckedContinuation<Outcome, Never>
    }

    private struct State {
        var queue: [Waiting] = []
        var writing = false
        var stats = SinkWriteStats()
    }

    private let maxBatches: Int
    private let maxReadings: Int
    private let flush: Flush
    private let state = Mutex(State())

    /// A group holds at most `maxBatches` batches and, beyond its first batch, `maxReadings`
    /// readings.
    init(maxBatches: Int, maxReadings: Int, flush: @escaping Flush) {
        self.maxBatches = max(1, maxBatches)
        self.maxReadings = max(1, maxReadings)
        self.flush = flush
    }

    func write(_ batch: IncomingBatch) async -> Outcome {
        await withCheckedContinuation { continuation in
            let startWriter = state.withLock { s in
                s.queue.append(Waiting(batch: batch, continuation: continuation))
                defer { s.writing = true }
                return !s.writing
            }
            if startWriter {
                Task { await self.drain() }
            }
        }
    }

    var stats: SinkWriteStats { state.withLock { $0.stats } }

    private func drain() async {
        while let group = nextGroup() {
            var outcomes = await flush(group.map(\.batch))
            // Every caller must be answered: a flush that returned too few outcomes fails the rest.
            while outcomes.count < group.count { outcomes.append(.failure(SinkError(.unavailable, "sink write returned no result"))) }
            let written = zip(group, outcomes).filter { (try? $0.1.get()) == .accepted }.map(\.0.batch)
            state.withLock { s in
                if !written.isEmpty {
                    s.stats.writes += 1
                    s.stats.largestWriteBatches = max(s.stats.largestWriteBatches, group.count)
                }
                s.stats.batches += written.count
                s.stats.readings += written.reduce(0) { $0 + $1.readings.count }
            }
            for (waiting, outcome) in zip(group, outcomes) { waiting.continuation.resume(returning: outcome) }
        }
    }

    /// The next group, oldest first; nil (and the writer stops) when nothing waits.
    private func nextGroup() -> [Waiting]? {
        state.withLock { s in
            guard !s.queue.isEmpty else {
                s.writing = false
                return nil
            }
            var count = 1
            var readings = s.queue[0].batch.readings.count
            while count < s.queue.count && count < maxBatches && readings + s.queue[count].batch.readings.count <= maxReadings {
                readings += s.queue[count].batch.readings.count
                count += 1
            }
            defer { s.queue.removeFirst(count) }
            return Array(s.queue.prefix(count))
        }
    }
}
