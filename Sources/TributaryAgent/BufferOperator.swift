import AsyncHTTPClient
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import TributaryBuffer
import TributaryCore
import TributaryRuntime
import TributarySparkplug

/// What `tributary-agent quarantine` and `tributary-agent set-aside` do to a gateway's buffer,
/// whether its agent runs or not.
///
/// - Reads (list, show, export) open the buffer file read-only: SQLite's WAL lets them run
///   beside the agent, which they never block.
/// - Writes (replay, retry, purge) are done by whoever owns the buffer. The tool tries the data
///   directory's lock: taken, no agent runs, and the tool does the write itself while holding it
///   (an agent starting meanwhile refuses to start and says which PID holds the directory);
///   held, an agent runs, and the tool asks it over its control socket (`ControlServer`), so
///   the write happens inside that agent, in step with its committer and its counters.
public struct BufferOperator: Sendable {
    /// The agent's configuration: needed to write while no agent runs (the gateway id the buffer
    /// must belong to; the subscriptions a replay decodes with). Reads, and writes the running
    /// agent does, need only the data directory.
    public let config: AgentConfig?
    public let dataDirectory: String

    public init(config: AgentConfig) {
        self.config = config
        dataDirectory = config.dataDirectory
    }

    public init(dataDirectory: String, config: AgentConfig?) {
        self.config = config
        self.dataDirectory = dataDirectory
    }

    var bufferPath: String { dataDirectory + "/buffer.sqlite" }
    var controlSocketPath: String { dataDirectory + "/" + ControlServer.socketName }

    /// Who did a write.
    public enum Via: String, Sendable {
        /// The running agent, over its control socket.
        case agent
        /// The tool itself, holding the data directory's lock (no agent ran).
        case tool
    }

    /// The buffer, read-only.
    public func reader() throws(OperatorError) -> BufferReader {
        try checkBufferExists()
        do {
            return try BufferReader(path: bufferPath)
        } catch {
            throw OperatorError("cannot read the buffer \(bufferPath): \(error)")
        }
    }

    /// The buffer is there, and this process runs as its owner: SQLite makes files beside it
    /// (`-wal`, `-shm`; a reader too), and made by root they would keep the agent's own user
    /// from opening its buffer at its next start.
    private func checkBufferExists() throws(OperatorError) {
        var info = stat()
        guard stat(bufferPath, &info) == 0 else {
            throw OperatorError("no buffer file at \(bufferPath) (data_dir \(dataDirectory)): "
                                + "check --config or --data-dir; the agent makes it when it first starts")
        }
        guard info.st_uid == geteuid() else {
            let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(info.st_uid)"
            throw OperatorError("\(bufferPath) belongs to \(owner), the agent's user: run this as that user "
                                + "(sudo -u \(owner) tributary-agent ...), so the files SQLite makes beside the buffer stay the agent's")
        }
    }

    /// The sequences of the set-aside batches, all or those whose oldest reading was received
    /// before `receivedBeforeMs`.
    public func setAsideSequences(receivedBeforeMs: Int64? = nil) throws(OperatorError) -> [UInt64] {
        do {
            return try reader().setAsideBatches().filter { $0.oldestReceivedMs < (receivedBeforeMs ?? .max) }.map(\.sequence)
        } catch let error as OperatorError {
            throw error
        } catch {
            throw OperatorError("cannot read the set-aside batches: \(error)")
        }
    }

    // MARK: writes

    public func quarantine(_ action: QuarantineAction) async throws(OperatorError) -> (QuarantineOutcome, Via) {
        try await write(
            direct: { (buffer: BufferStore, config: AgentConfig) throws(OperatorError) -> QuarantineOutcome in
                switch action {
                case .replay(let topic):
                    return .replayed(try replayDirectly(buffer, config: config, topic: topic))
                case .purge(let before, let topic):
                    do {
                        return .purged(try buffer.purgeQuarantine(receivedBeforeMs: before, topic: topic))
                    } catch {
                        throw OperatorError("cannot purge the quarantine: \(error)")
                    }
                }
            },
            viaAgent: { (client: ControlClient) throws(OperatorError) -> QuarantineOutcome in
                let reply: ControlReply
                switch action {
                case .replay(let topic):
                    reply = try await client.post("/v1/quarantine/replay", query: ["topic": topic?.description])
                case .purge(let before, let topic):
                    reply = try await client.post("/v1/quarantine/purge", query: ["received_before_ms": String(before), "topic": topic?.description])
                }
                if let summary = reply.replay { return .replayed(summary) }
                if let purged = reply.purged { return .purged(purged) }
                return .failed(reply.error ?? "the agent gave no answer")
            })
    }

    public func setAside(_ action: SetAsideAction, sequences: [UInt64]) async throws(OperatorError) -> (SetAsideOutcome, Via) {
        try await write(
            direct: { (buffer: BufferStore, _: AgentConfig) throws(OperatorError) -> SetAsideOutcome in
                do {
                    return try action.apply(sequences, to: buffer)
                } catch {
                    throw OperatorError("cannot \(action.rawValue) set-aside batches: \(error)")
                }
            },
            viaAgent: { (client: ControlClient) throws(OperatorError) -> SetAsideOutcome in
                let reply = try await client.post("/v1/set-aside/\(action.rawValue)",
                                                  query: ["sequences": sequences.map(String.init).joined(separator: ",")])
                guard let outcome = reply.setAside else { throw OperatorError(reply.error ?? "the agent gave no answer") }
                return outcome
            })
    }

    /// Runs `direct` on the buffer while holding the data directory's lock, or, when an agent
    /// holds it, `viaAgent` over that agent's control socket.
    private func write<T>(direct: (BufferStore, AgentConfig) throws(OperatorError) -> T,
                          viaAgent: (ControlClient) async throws(OperatorError) -> T) async throws(OperatorError) -> (T, Via) {
        try checkBufferExists()
        let lock: DataDirectoryLock
        do {
            lock = try DataDirectoryLock(directory: dataDirectory, program: "tributary-agent")
        } catch {
            guard let pid = (error as AgentStartError).holderPID else { throw OperatorError((error as AgentStartError).message) }
            let client = ControlClient(socketPath: controlSocketPath, agentPID: pid)
            return (try await viaAgent(client), .agent)
        }
        defer { lock.release() }
        guard let config else {
            throw OperatorError("no agent runs on \(dataDirectory), so this tool would write the buffer itself, and for that it needs "
                                + "the agent's configuration: give --config FILE (or TRIBUTARY_AGENT_CONFIG)")
        }
        let buffer: BufferStore
        do {
            buffer = try BufferStore(path: bufferPath, gatewayID: config.gatewayID, synchronous: config.buffer.synchronous)
        } catch {
            throw OperatorError("cannot open the buffer: \(error)")
        }
        defer { buffer.close() }
        return (try direct(buffer, config), .tool)
    }

    /// A replay by the tool, the agent stopped: the router built from this configuration, the
    /// redelivery window and Sparkplug sessions the agent left in the buffer, and the window
    /// saved back with what the replay stored (for the agent's next start).
    private func replayDirectly(_ buffer: BufferStore, config: AgentConfig, topic: TopicFilter?) throws(OperatorError) -> ReplaySummary {
        let router: MessageRouter
        do {
            router = try MessageRouter(subscriptions: config.mqtt.subscriptions, gatewayID: config.gatewayID, hashKey: config.hashKey)
        } catch {
            throw OperatorError("cannot build the subscriptions' decoders: \(error)")
        }
        var filter = RedeliveryFilter(capacity: config.buffer.redeliveryWindow)
        let sparkplug: SparkplugHost
        do {
            filter.restore(try buffer.redeliveryWindow(), nowMs: MonotonicClock.nowMs())
            sparkplug = SparkplugHost(gatewayID: config.gatewayID, restoring: try buffer.sparkplugSessions())
        } catch {
            throw OperatorError("cannot read the redelivery window and Sparkplug sessions from the buffer: \(error)")
        }
        let sessions = MessageRouter.Sessions(redeliveryFilter: filter, sparkplug: sparkplug)
        let summary = QuarantineReplay(buffer: buffer, router: router, quotaBytes: config.buffer.maxBytes).run(topic: topic, sessions: sessions)
        do {
            try buffer.setRedeliveryWindow(sessions.redeliveryFilter.saved(nowMs: MonotonicClock.nowMs()))
        } catch {
            throw OperatorError("replayed (\(summary.replayed) payloads), but cannot save the redelivery window: \(error)")
        }
        return summary
    }
}

/// A tool's failure: one line for the operator.
public struct OperatorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// HTTP over the running agent's control socket.
struct ControlClient {
    let socketPath: String
    let agentPID: Int32

    /// Long: a job waits behind the messages queued before it, and the committer may be waiting
    /// for room in the buffer (its quota) before it gets to it.
    static let timeout: TimeAmount = .minutes(10)

    func post(_ path: String, query: [String: String?]) async throws(OperatorError) -> ControlReply {
        let agent = "the agent (PID \(agentPID == 0 ? "unknown" : String(agentPID))) that holds data_dir"
        var info = stat()
        guard lstat(socketPath, &info) == 0 else {
            throw OperatorError("\(agent) has no control socket at \(socketPath) (an agent older than this tool, or it is starting or stopping): "
                                + "stop it and run the command again, or try again in a moment")
        }
        // Whoever answers there is trusted with the request and believed: in a data directory
        // other users can write, one of them could put a socket of their own there. The agent
        // runs as the buffer's owner, which this tool is (it refuses any other user), so the
        // agent's socket is ours.
        guard info.st_mode & S_IFMT == S_IFSOCK, info.st_uid == geteuid() else {
            throw OperatorError("\(socketPath) is not the agent's control socket: it is \(info.st_mode & S_IFMT == S_IFSOCK ? "a socket" : "not a socket")"
                                + " owned by uid \(info.st_uid), and the agent runs as uid \(geteuid()), the buffer's owner. Nothing was asked; "
                                + "check who can write \(URL(fileURLWithPath: socketPath).deletingLastPathComponent().path) (it should be 0700)")
        }
        var components = URLComponents()
        components.path = path
        components.queryItems = query.compactMap { key, value in value.map { URLQueryItem(name: key, value: $0) } }
        guard let uri = components.string, let url = URL(httpURLWithSocketPath: socketPath, uri: uri) else {
            throw OperatorError("cannot make a request to the control socket \(socketPath)")
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            var request = HTTPClientRequest(url: url.absoluteString)
            request.method = .POST
            let response = try await client.execute(request, timeout: Self.timeout)
            let body = try await response.body.collect(upTo: 16 << 20)
            try await client.shutdown()
            guard let reply = try? JSONDecoder().decode(ControlReply.self, from: Data(body.readableBytesView)) else {
                throw OperatorError("\(agent) answered \(response.status.code) with something that is not its JSON")
            }
            if let error = reply.error, reply.replay == nil, reply.purged == nil, reply.setAside == nil {
                throw OperatorError("\(agent): \(error)")
            }
            return reply
        } catch let error as OperatorError {
            try? await client.shutdown()
            throw error
        } catch {
            try? await client.shutdown()
            throw OperatorError("\(agent) did not answer on \(socketPath): \(error). If it timed out, the job may still run: check with list")
        }
    }
}
