import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TributaryBuffer
import TributaryCore
import TributaryRuntime
import TributarySQLite

/// The agent, assembled: the buffer file, the ingest service, the uploader and the status
/// listener. A Service: `run()` runs them until a graceful shutdown (SIGTERM in the executable:
/// stop reading, commit, stop), then releases the HTTP client, the buffer file and the data dir
/// lock, also when one of them fails. An agent made but never run must be `close()`d.
public final class Agent: Service, Sendable {
    /// The configuration the agent started with (see `liveConfig` for the one in force).
    public let config: AgentConfig
    public let buffer: BufferStore
    public let stats: AgentStats
    private let services: [any Service]
    private let closed = Mutex(false)
    private let http: HTTPClient
    let logger: Logger
    let ingest: IngestService
    let uploader: Uploader
    /// Where SIGHUP reads the configuration again; nil: SIGHUP is ignored.
    private let reloadSource: AgentReloadSource?
    private let live: Mutex<AgentConfig>
    /// The configuration in force: the one started with, or the last reload's.
    public var liveConfig: AgentConfig { live.withLock { $0 } }
    func setLiveConfig(_ config: AgentConfig) { live.withLock { $0 = config } }
    private let statusPort = BoundPort()
    private let lock: DataDirectoryLock

    /// The status listener's port once it listens (useful with port 0); only with `status_listen`.
    public func statusListenerPort() async -> Int { await statusPort.wait() }

    public init(config: AgentConfig, logger: Logger, reloadingFrom reloadSource: AgentReloadSource? = nil) throws {
        self.config = config
        self.logger = logger
        self.reloadSource = reloadSource
        live = Mutex(config)
        do {
            // Mode 0700 when made here; an existing one others can enter is only reported.
            if try PrivateFiles.makeDirectory(config.dataDirectory) {
                logger.warning("data_dir is open to other users; its files are made 0600, but chmod 700 (or 750) it", metadata: ["dir": "\(config.dataDirectory)"])
            }
        } catch {
            throw AgentStartError(message: "cannot create data_dir \(config.dataDirectory): \(error.localizedDescription)")
        }
        // Before the buffer is even opened: a second agent must not touch it.
        lock = try DataDirectoryLock(directory: config.dataDirectory, program: "tributary-agent")
        buffer = try BufferStore(path: config.bufferPath, gatewayID: config.gatewayID, synchronous: config.buffer.synchronous)
        stats = AgentStats()
        // A refused connection must reach the uploader at once, so its own backoff (with
        // jitter, and AIMD) decides when to try again and the error shows in the fleet view;
        // AsyncHTTPClient's default would hold the request and retry until the timeout.
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        httpConfiguration.timeout.connect = .seconds(Int64(min(config.aggregator.requestTimeoutSeconds, 5)))
        httpConfiguration.tlsConfiguration = try config.aggregator.tls?.clientConfiguration(gatewayID: config.gatewayID)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        ingest = try IngestService(config: config, buffer: buffer, stats: stats, logger: logger)
        uploader = Uploader(config: config, buffer: buffer, stats: stats, http: http, logger: logger)
        // ServiceGroup stops services in reverse order: the status listener and the uploader
        // first, then ingest, which commits everything it has received before it returns.
        let statusServer = StatusServer(config: config, buffer: buffer, stats: stats)
            .service(logger: logger) { [statusPort] port in statusPort.set(port) }
        // The control socket stops before ingest, whose committer runs its quarantine jobs.
        let control = ControlServer(config: config, buffer: buffer, ingest: ingest).service(logger: logger)
        services = [ingest, uploader] + (control.map { [$0] } ?? []) + (statusServer.map { [$0] } ?? [])
        logger.info("buffer opened", metadata: [
            "gateway": "\(config.gatewayID)", "path": "\(config.bufferPath)", "epoch": "\(buffer.epoch)",
            "backlog": "\(buffer.snapshot.unsealedReadings + buffer.snapshot.sealedReadings)",
        ])
    }

    public func run() async throws {
        // ServiceGroup stops services in reverse order; a graceful shutdown of the group this
        // agent runs in reaches this one.
        // The reloader last, so it is the first stopped.
        let reloader: [any Service] = reloadSource.map { [ReloadOnHangup(agent: self, source: $0)] } ?? []
        let group = ServiceGroup(configuration: .init(services: (services + reloader).map { .init(service: $0) }, logger: logger))
        do {
            try await group.run()
        } catch {
            await close()
            throw error
        }
        await close()
    }

    /// Releases the HTTP client, closes the buffer and the data dir lock; `run()` does it on
    /// its way out. Once only: a second call does nothing.
    public func close() async {
        guard closed.withLock({ wasClosed in defer { wasClosed = true }; return !wasClosed }) else { return }
        do {
            try await http.shutdown()
        } catch {
            logger.warning("HTTP client did not shut down cleanly", metadata: ["error": "\(error)"])
        }
        buffer.close()
        lock.release()
    }
}

public struct AgentStartError: Error, CustomStringConvertible {
    public let message: String
    /// Set when the data directory's lock is held by another process (its PID, 0 if unknown):
    /// an agent runs there.
    public var holderPID: Int32?
    public var description: String { message }

    public init(message: String) {
        self.message = message
    }
}
