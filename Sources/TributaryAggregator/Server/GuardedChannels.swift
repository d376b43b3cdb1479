import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTPTypes

// The aggregator's HTTP server, guarded against clients that are slow, stuck or too many (see
// `ConnectionLimits`). Hummingbird's HTTP1 channel does the HTTP; three wrappers around it:
//
//   GuardedChannel + AddressLimitHandler   counts connections per address, closes those past the limits
//     [ReloadableTLSChannel]               (HTTPS; a reload swaps its certificates)
//       GuardedChannel + HeadTimingHandler times each request's head on the plain bytes ...
//         HTTP1Channel                     ... and its body on the HTTP parts (BodyDeadlineHandler)
//
// Idle connections are closed by Hummingbird's own idle timeout.

/// A child channel with one handler of ours in front of `base`'s: `AddressLimitHandler`
/// outermost, so a connection past the limits is closed before any TLS handshake is spent on
/// it; `HeadTimingHandler` behind TLS, so it sees plain bytes.
struct GuardedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let makeHandler: @Sendable () -> any ChannelHandler

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(makeHandler())
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Counts each connection against its address and all; one past the limits is closed at once.
final class AddressLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let limits: ConnectionLimits
    private var counted: String?

    init(limits: ConnectionLimits) { self.limits = limits }

    func channelActive(context: ChannelHandlerContext) {
        let address = ConnectionLimits.address(of: context.channel)
        guard limits.open(from: address) else {
            context.close(promise: nil)
            return
        }
        counted = address
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let counted { limits.close(from: counted) }
        counted = nil
        context.fireChannelInactive()
    }
}

/// A request's head must arrive whole within `headerTimeout` of its first byte. Watches the
/// plain bytes for the blank line that ends a head; `BodyDeadlineHandler` says when the
/// request is over, and the next byte starts the next head.
final class HeadTimingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Phase { case idle, head, rest }
    private(set) var phase = Phase.idle
    /// How much of "\r\n\r\n" the bytes so far end with.
    private var matched = 0
    /// Whether the head's request line has begun: empty lines before it (which HTTP parsers
    /// skip) must not read as the end of a head.
    private var started = false
    private var timer: Scheduled<Void>?
    private let limits: ConnectionLimits

    init(limits: ConnectionLimits) { self.limits = limits }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if phase == .idle, buffer.readableBytes > 0 {
            phase = .head
            matched = 0
            started = false
            let channel = context.channel, limits = limits
            timer = context.eventLoop.scheduleTask(in: limits.settings.headerTimeout) {
                limits.cutOff(.head, from: ConnectionLimits.address(of: channel))
                channel.close(promise: nil)
            }
        }
        if phase == .head, endsHead(buffer) {
            phase = .rest
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    private func endsHead(_ buffer: ByteBuffer) -> Bool {
        let pattern: [UInt8] = [13, 10, 13, 10]
        return buffer.withUnsafeReadableBytes { bytes in
            for byte in bytes {
                if !started {
                    guard byte != 13 && byte != 10 else { continue }
                    started = true
                }
                if byte == pattern[matched] {
                    matched += 1
                    if matched == 4 { return true }
                } else {
                    matched = byte == 13 ? 1 : 0
                }
            }
            return false
        }
    }

    /// The request's head was decoded (the scan may have missed its end in a pipelined read).
    func headReceived() {
        phase = .rest
        timer?.cancel()
        timer = nil
    }

    /// The request's body is in: the next byte starts a new head.
    func requestReceived() {
        phase = .idle
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}

/// A request's body must keep arriving: after `bodyTimeout`, at least `minBodyBytesPerSecond`
/// for every second since, checked each second, and all of it within `bodyTimeout` plus its
/// length at that rate. A client trickling bytes holds a place in admission control (counted
/// by its declared length), which others need; a total deadline alone let a 16 MiB
/// declaration trickle for 17 minutes.
final class BodyDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let limits: ConnectionLimits
    private let maxBodyBytes: Int
    private var timer: RepeatedTask?
    private var started = NIODeadline.now()
    private var received = 0
    private var declared = 0
    private weak var headTiming: HeadTimingHandler?

    init(limits: ConnectionLimits, maxBodyBytes: Int) {
        self.limits = limits
        self.maxBodyBytes = maxBodyBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        headTiming = try? context.pipeline.syncOperations.handler(type: HeadTimingHandler.self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            headTiming?.headReceived()
            declared = min(request.headerFields[.contentLength].flatMap(Int.init) ?? maxBodyBytes, maxBodyBytes)
            started = .now()
            received = 0
            timer?.cancel()
            let channel = context.channel, loop = context.eventLoop, limits = limits
            // Runs on this channel's event loop, as the handler does.
            let handler = NIOLoopBound(self, eventLoop: loop)
            timer = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { task in
                guard handler.value.tooSlow() else { return }
                task.cancel()
                limits.cutOff(.body, from: ConnectionLimits.address(of: channel))
                channel.close(promise: nil)
            }
        case .body(let buffer):
            received += buffer.readableBytes
        case .end:
            timer?.cancel()
            timer = nil
            headTiming?.requestReceived()
        }
        context.fireChannelRead(data)
    }

    /// Behind the minimum rate, or past the whole body's deadline.
    private func tooSlow() -> Bool {
        let settings = limits.settings
        let elapsed = NIODeadline.now() - started
        if elapsed > settings.bodyDeadline(length: declared) { return true }
        let owed = (elapsed - settings.bodyTimeout).nanoseconds
        return owed > 0 && Double(received) < Double(settings.minBodyBytesPerSecond) * Double(owed) / 1e9
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}
