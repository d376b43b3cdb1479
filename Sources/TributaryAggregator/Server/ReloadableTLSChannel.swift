import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The server's TLS context, replaced by a reload (new certificates, a new key): each new
/// connection's handshake uses the context current when it was accepted; a connection already
/// open keeps the one it began with, so a reload drops nobody.
final class ReloadableTLSContext: Sendable {
    private let context: Mutex<NIOSSLContext>

    init(_ configuration: TLSConfiguration) throws {
        context = Mutex(try NIOSSLContext(configuration: configuration))
    }

    var current: NIOSSLContext { context.withLock { $0 } }

    /// Builds the new context first: a certificate or key that does not load leaves the old one.
    func replace(with configuration: TLSConfiguration) throws {
        let fresh = try NIOSSLContext(configuration: configuration)
        context.withLock { $0 = fresh }
    }
}

/// As Hummingbird's `TLSChannel`, with the context asked for at each connection.
struct ReloadableTLSChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let context: ReloadableTLSContext

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let sslContext = context.current
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
