import TributarySinks
import Logging

/// Whether the sink answers, for `/readyz` and `tributary_sink_up`. Probes and scrapes come
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

    init(sink: any Sink, logger: Logger) {
        self.sink = sink
        self.logger = logger
    }

    /// Nil when the sink answered recently, else why not.
    func problem() async -> String? {
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
