import TributarySinks
import Logging

/// Whether the aggregator can commit batches now, for `/readyz` (and a load balancer in front
/// of several aggregators) and `tributary_sink_up`: not while it shuts down, nor while its last
/// sink writes failed (a disk full, a shard or quorum missing: the probe's query may still pass)
/// within `writeFailureMemory`, nor while the sink does not answer a probe. Probes and scrapes come
/// often and `/readyz` needs no token, so the sink is asked at most once every two seconds, one
/// question at a time, and an answer slower than two seconds counts as "not ready". The
/// details go to the log (when they change), not to the unauthenticated caller.
actor SinkReadiness {
    private let sink: any Sink
    private let logger: Logger
    private let maxAge: Duration = .seconds(2)
    private let timeout: Duration = .seconds(2)
    private var last: (at: ContinuousClock.Instant, problem: String?)?
    private var running: Task<String?, Never>?
    private var shuttingDown = false
    /// Why the latest sink writes failed, if they did within the last 10 s (after that the
    /// probe decides again: a balancer that took this aggregator out sends it nothing to retry).
    private let recentWriteFailure: @Sendable () -> String?

    init(sink: any Sink, logger: Logger, recentWriteFailure: @escaping @Sendable () -> String? = { nil }) {
        self.sink = sink
        self.logger = logger
        self.recentWriteFailure = recentWriteFailure
    }

    /// From the graceful shutdown on, not ready: balancers stop sending before the port closes.
    func shutDown() { shuttingDown = true }

    /// Nil when ready, else why not.
    func problem() async -> String? {
        if shuttingDown { return "shutting down" }
        if let failure = recentWriteFailure() { return "the last sink writes failed: \(failure)" }
        return await sinkProblem()
    }

    /// Nil when the sink answered recently, else why not.
    private func sinkProblem() async -> String? {
        if let last, ContinuousClock.now - last.at < maxAge { return last.problem }
        if let running { return await running.value }
        let task = Task { [sink, timeout] in await Self.ask(sink, timeout: timeout) }
        running = task
        let problem = await task.value
        running = nil
        if problem != last?.problem {
            if let problem {
                logger.warning("sink not ready", metadata: ["sink": "\(sink)", "error": "\(problem)"])
            } else if last != nil {
                logger.info("sink ready again", metadata: ["sink": "\(sink)"])
            }
        }
        last = (ContinuousClock.now, problem)
        return problem
    }

    private static func ask(_ sink: any Sink, timeout: Duration) async -> String? {
        await withTaskGroup(of: String?.self) { group in
            group.addTask { await sink.readinessProblem() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return "no answer within \(timeout)"
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
