import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TributaryCore
import TributaryWire

/// The aggregator, assembled: sink, fleet registry, and the HTTP server.
/// `service` runs it in a ServiceGroup; SIGTERM stops accepting and lets requests finish.
public final class Aggregator: Sendable {
    public let config: AggregatorConfig
    public let sink: any Sink
    public let registry: FleetRegistry
    public let ingestor: BatchIngestor
    private let application: Application<RouterResponder<BasicRequestContext>>
    private let boundPort: BoundPort
    private let logger: Logger

    public init(config: AggregatorConfig, logger: Logger) throws {
        self.config = config
        do {
            try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw AggregatorStartError(message: "cannot create data_dir \(config.dataDirectory): \(error.localizedDescription)")
        }
        switch config.sink {
        case .sqlite(let path):
            sink = try SQLiteSink(path: path)
        case .clickhouse(let endpoint):
            sink = ClickHouseSink(endpoint: endpoint, settings: config.clickHouse, logger: logger)
        }
        self.logger = logger
        registry = try FleetRegistry(path: config.dataDirectory + "/registry.sqlite")
        ingestor = BatchIngestor(sink: sink, registry: registry, limits: config.limits, logger: logger)
        let boundPort = BoundPort()
        self.boundPort = boundPort
        let sink = self.sink
        let router = Self.router(config: config, sink: sink, registry: registry, ingestor: ingestor)
        application = Application(
            router: router,
            configuration: .init(address: .hostname(config.listenHost, port: config.listenPort), serverName: "tributary-aggregator"),
            onServerRunning: { channel in
                boundPort.set(channel.localAddress?.port ?? 0)
                logger.info("aggregator listening", metadata: [
                    "address": "\(config.listenHost):\(channel.localAddress?.port ?? 0)", "sink": "\(sink)",
                ])
            },
            logger: logger)
    }

    /// Checks the sink before serving. A sink that is unreachable is only logged: the
    /// aggregator serves anyway and answers 503 until it is back, so services can start in any
    /// order. A sink that refuses the configuration (e.g. wrong credentials) is an error.
    public func prepareSink() async throws {
        do {
            try await sink.prepare()
        } catch where error.kind == .misconfigured {
            throw AggregatorStartError(message: error.description)
        } catch {
            logger.warning("sink not ready; batches are answered 503 until it is", metadata: ["sink": "\(sink)", "error": "\(error)"])
        }
    }

    /// The HTTP server as a Service.
    public var service: any Service { application }

    /// The port the server listens on, once it runs (useful with port 0).
    public func port() async -> Int { await boundPort.wait() }

    public func shutdown() async {
        await sink.close()
        registry.close()
    }

    static func router(config: AggregatorConfig, sink: any Sink, registry: FleetRegistry, ingestor: BatchIngestor) -> Router<BasicRequestContext> {
        let router = Router()
        router.post(RouterPath(WireProtocol.batchesPath)) { request, context -> Response in
            // Admitted before the body is read, by its declared length: memory stays bounded
            // by max_in_flight_bytes however many agents send at once.
            let declared = request.headers[.contentLength].flatMap(Int.init) ?? config.limits.maxBodyBytes
            let result = declared > config.limits.maxBodyBytes
                ? ingestor.refusal(413, reason: "body of \(declared) bytes exceeds \(config.limits.maxBodyBytes)")
                : await ingestor.admitted(declaredBytes: declared) {
                var request = request
                let body: ByteBuffer
                do {
                    body = try await request.collectBody(upTo: config.limits.maxBodyBytes)
                } catch {
                    return ingestor.refusal(413, reason: "body exceeds \(config.limits.maxBodyBytes) bytes")
                }
                return await ingestor.process(
                    body: Array(buffer: body), contentType: request.headers[.contentType],
                    contentEncoding: request.headers[.contentEncoding])
            }
            var headers: HTTPFields = [.contentType: WireProtocol.protobufContentType]
            if let retryAfter = result.retryAfterSeconds { headers[.retryAfter] = String(retryAfter) }
            let bytes = (try? result.ack.serializedBytes()) ?? [UInt8]()
            return Response(status: .init(code: result.httpStatus), headers: headers,
                            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get(RouterPath(WireProtocol.fleetPath)) { _, _ -> Response in
            let now = WallClock.nowMs()
            let gateways = try await registry.gateways(nowMs: now, staleAfterSeconds: config.staleAfterSeconds)
            let view = FleetView(generatedAtMs: now, staleAfterSeconds: config.staleAfterSeconds, sink: sink.description,
                                 admission: ingestor.admissionStats, sinkWrites: sink.writeStats, gateways: gateways)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = try encoder.encode(view)
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/healthz") { _, _ in "ok\n" }
        return router
    }
}

public struct AggregatorStartError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The listening port, published once the server runs.
final class BoundPort: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))

    func set(_ port: Int) {
        let waiters = state.withLock { s in
            s.port = port
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    func wait() async -> Int {
        await withCheckedContinuation { continuation in
            let known: Int? = state.withLock { s in
                if let port = s.port { return port }
                s.waiters.append(continuation)
                return nil
            }
            if let known { continuation.resume(returning: known) }
        }
    }
}
