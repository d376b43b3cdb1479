import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TributaryBuffer
import TributaryCore

#if canImport(Glibc)
import Glibc
#endif

/// The running agent's local channel for `tributary-agent quarantine` and `set-aside`: HTTP on a
/// unix socket in the data directory (`control.sock`, mode 0600, in a directory the agent makes
/// 0700), so only the agent's own user (and root) can ask it anything; nothing listens on the
/// network. Writes an operator asks for go through the agent that owns the buffer, so none
/// races its in-memory counters or its committer: jobs on the quarantine run on the committer
/// thread (`IngestService.perform`), set-aside batches through the same `BufferStore` the
/// uploader uses. Reads need no channel: the tools read the file (WAL) beside the agent.
///
/// Every answer is JSON (`ControlReply`); a request that cannot be done is answered 4xx/5xx with
/// `error` saying why.
struct ControlServer {
    static let socketName = "control.sock"
    /// sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
    static let maxSocketPathBytes = 103

    let config: AgentConfig
    let buffer: BufferStore
    let ingest: IngestService

    /// The server as a Service; nil (with a warning) when the socket path is too long for a
    /// unix socket. A server that cannot listen is logged and leaves the agent running: the
    /// tools then say the agent does not answer.
    func service(logger: Logger) -> (any Service)? {
        let path = config.controlSocketPath
        guard path.utf8.count <= Self.maxSocketPathBytes else {
            logger.warning("data_dir is too long a path for the control socket; quarantine and set-aside writes need the agent stopped",
                           metadata: ["path": "\(path)"])
            return nil
        }
        let router = Router()
        let buffer = self.buffer, ingest = self.ingest
        router.post("/v1/quarantine/replay") { request, _ -> Response in
            let topic = request.uri.queryParameters["topic"].map { TopicFilter(String($0)) }
            return Self.answer(await ingest.perform(.replay(topic: topic)))
        }
        router.post("/v1/quarantine/purge") { request, _ -> Response in
            guard let before = request.uri.queryParameters["received_before_ms"].flatMap({ Int64(String($0)) }) else {
                return Self.reply(.badRequest, ControlReply(error: "received_before_ms is required"))
            }
            let topic = request.uri.queryParameters["topic"].map { TopicFilter(String($0)) }
            return Self.answer(await ingest.perform(.purge(receivedBeforeMs: before, topic: topic)))
        }
        for (route, action) in [("retry", SetAsideAction.retry), ("purge", .purge)] {
            router.post("/v1/set-aside/\(route)") { request, _ -> Response in
                let text = request.uri.queryParameters["sequences"].map(String.init) ?? ""
                let sequences = text.split(separator: ",").compactMap { UInt64($0) }
                guard !sequences.isEmpty, sequences.count == text.split(separator: ",").count else {
                    return Self.reply(.badRequest, ControlReply(error: "sequences must be a comma-separated list of batch sequence numbers"))
                }
                do {
                    let outcome = try await NIOThreadPool.singleton.runIfActive { try action.apply(sequences, to: buffer) }
                    logger.notice("set-aside batches \(route == "retry" ? "put back in the send queue" : "purged")", metadata: [
                        "gateway": "\(buffer.gatewayID)", "batches": "\(outcome.done.map(\.sequence))",
                        "readings": "\(outcome.done.reduce(0) { $0 + $1.readings })",
                    ])
                    return Self.reply(.ok, ControlReply(setAside: outcome))
                } catch {
                    return Self.reply(.internalServerError, ControlReply(error: "\(error)"))
                }
            }
        }
        let app = Application(
            router: router,
            server: LocalListener.server,
            configuration: .init(address: .unixDomainSocket(path: path), serverName: "tributary-agent",
                                 availableConnectionsDelegate: MaximumAvailableConnections(LocalListener.maxConnections)),
            onServerRunning: { _ in
                // The directory is 0700 already when the agent made it; the socket itself too.
                if chmod(path, 0o600) != 0 {
                    logger.warning("cannot make the control socket 0600", metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
                }
                logger.info("control socket ready", metadata: ["path": "\(path)"])
            },
            logger: logger)
        return Guarded(app: app, path: path, logger: logger)
    }

    private static func answer(_ outcome: QuarantineOutcome) -> Response {
        switch outcome {
        case .replayed(let summary): reply(.ok, ControlReply(replay: summary))
        case .purged(let count): reply(.ok, ControlReply(purged: count))
        case .failed(let message): reply(.serviceUnavailable, ControlReply(error: message))
        }
    }

    private static func reply(_ status: HTTPResponse.Status, _ body: ControlReply) -> Response {
        let data = (try? JSONEncoder().encode(body)) ?? Data(#"{"error":"cannot encode the answer"}"#.utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Runs the server; should it fail (the socket cannot be made), logs why and waits for the
    /// agent's shutdown instead of stopping the agent. Removes the socket on the way out.
    private struct Guarded: Service {
        let app: any Service
        let path: String
        let logger: Logger

        func run() async throws {
            do {
                try await app.run()
            } catch {
                logger.error("control socket not available; quarantine and set-aside writes need the agent stopped",
                             metadata: ["path": "\(path)", "error": "\(error)"])
                try? await gracefulShutdown()
            }
            unlink(path)
        }
    }
}

/// What an operator asks of the quarantine; run on the committer thread (or by the tool while
/// the agent is stopped).
public enum QuarantineAction: Sendable {
    case replay(topic: TopicFilter?)
    /// Payloads received before this wall time (ms), of the topics `topic` matches.
    case purge(receivedBeforeMs: Int64, topic: TopicFilter?)
}

public enum QuarantineOutcome: Sendable {
    case replayed(ReplaySummary)
    case purged(Int)
    case failed(String)
}

/// What an operator asks of set-aside batches.
public enum SetAsideAction: String, Sendable {
    /// Back in the send queue, same identity, attempts reset.
    case retry
    /// Deleted, its readings counted as dropped.
    case purge

    func apply(_ sequences: [UInt64], to buffer: BufferStore) throws -> SetAsideOutcome {
        var outcome = SetAsideOutcome()
        for sequence in sequences {
            let readings = switch self {
            case .retry: try buffer.retrySetAside(sequence)
            case .purge: try buffer.purgeSetAside(sequence)
            }
            if let readings {
                outcome.done.append(.init(sequence: sequence, readings: readings))
            } else {
                outcome.unknown.append(sequence)
            }
        }
        return outcome
    }
}

/// The batches a set-aside action did, and the sequences no set-aside batch has.
public struct SetAsideOutcome: Codable, Sendable, Equatable {
    public struct Batch: Codable, Sendable, Equatable {
        public var sequence: UInt64
        public var readings: Int
    }
    public var done: [Batch] = []
    public var unknown: [UInt64] = []
    public init() {}
}

/// What the agent's two local listeners (the control socket and `status_listen`) allow a
/// client: they serve operators' tools and a scraper, a request at a time, so a few connections
/// are plenty, and one that says nothing is closed.
enum LocalListener {
    /// At most this many connections at once; more wait in the listener's backlog, holding no
    /// file descriptor of the agent's (20,000 held open ran it out of them and crashed it:
    /// attack round 14).
    static let maxConnections = 16
    /// A connection with no request for this long is closed, so idle ones cannot keep the tools
    /// (or a scraper) out for good. A request being answered is never cut: a replay may take
    /// minutes.
    static let idleTimeout: TimeAmount = .seconds(30)

    static var server: HTTPServerBuilder { .http1(configuration: .init(idleTimeout: idleTimeout)) }
}

/// The control socket's answers.
struct ControlReply: Codable {
    var replay: ReplaySummary?
    var purged: Int?
    var setAside: SetAsideOutcome?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case replay, purged, error
        case setAside = "set_aside"
    }
}

extension AgentConfig {
    /// The running agent's control socket (see `ControlServer`).
    public var controlSocketPath: String { dataDirectory + "/" + ControlServer.socketName }
}
