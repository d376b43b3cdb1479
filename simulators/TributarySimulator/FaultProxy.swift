import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy that injects faults between a client and its server: latency, a bandwidth
/// limit, partitions (a black hole), refused and cut connections, and lost replies. It sits
/// on agent <-> aggregator or broker <-> agent links in tests and demos.
///
/// Plain blocking sockets, two threads per connection (one per direction): simple, and
/// plenty for the handful of connections a test opens.
public final class FaultProxy: Sendable {
    public struct Endpoint: Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int

        /// `HOST:PORT`, e.g. `127.0.0.1:8470`.
        public init(_ text: String) throws(ProxyError) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
                throw ProxyError("'\(text)' is not HOST:PORT")
            }
            host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    /// What the proxy did, for logs and tests.
    public struct Counters: Sendable, Equatable, CustomStringConvertible {
        public var connections = 0
        public var refused = 0
        public var responsesDropped = 0
        public var cut = 0
        public var bytesToTarget: Int64 = 0
        public var bytesToClient: Int64 = 0

        public var description: String {
            "connections \(connections), refused \(refused), replies dropped \(responsesDropped), cut \(cut), "
                + "bytes to target \(bytesToTarget), to client \(bytesToClient)"
        }
    }

    private struct State {
        var faults: ProxyFaults
        var counters = Counters()
        var open: [Int: Connection] = [:]
        var nextID = 0
        var stopped = false
        var random: SeededGenerator
    }

    public let listenPort: Int
    public let target: Endpoint
    private let listener: Int32
    private let state: Mutex<State>
    private let logger: Logger

    /// Binds the listening socket at once (port 0 picks a free one: see `listenPort`).
    public init(listen: Endpoint, target: Endpoint, faults: ProxyFaults = ProxyFaults(), seed: UInt64 = 1, logger: Logger) throws(ProxyError) {
        self.target = target
        self.logger = logger
        state = Mutex(State(faults: faults, random: SeededGenerator(seed: seed)))
        _ = try Self.socketAddress(target)  // a bad target is an error now, not at the first connection
        (listener, listenPort) = try Self.bind(listen)
    }

    public var faults: ProxyFaults { state.withLock { $0.faults } }
    public var counters: Counters { state.withLock { $0.counters } }

    /// Changes the faults now; `disconnect` cuts every open connection.
    public func apply(_ action: FaultSchedule.Action) {
        let cut: [Connection] = state.withLock { s in
            s.faults = s.faults.applying(action)
            guard action == .disconnect else { return [] }
            s.counters.cut += s.open.count
            return Array(s.open.values)
        }
        for connection in cut { connection.cut() }
    }

    /// Serves until the schedule's `end` step, or until the task is cancelled.
    public func run(schedule: FaultSchedule = FaultSchedule()) async {
        let acceptor = Thread { [self] in acceptLoop() }
        acceptor.name = "fault-proxy-accept"
        acceptor.start()
        defer { stop() }
        let start = ContinuousClock.now
        for step in schedule.steps {
            do {
                try await Task.sleep(until: start + .milliseconds(step.atMs))
            } catch {
                return
            }
            logger.notice("fault proxy step", metadata: ["at_ms": "\(step.atMs)", "action": "\(step.action)"])
            if step.action == .end { return }
            apply(step.action)
        }
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Closes the listener and cuts every connection.
    public func stop() {
        let open: [Connection]? = state.withLock { s in
            guard !s.stopped else { return nil }
            s.stopped = true
            return Array(s.open.values)
        }
        guard let open else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        for connection in open { connection.cut() }
    }

    // MARK: connections

    private func acceptLoop() {
        defer { close(listener) }
        while !state.withLock({ $0.stopped }) {
            var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            let (refuse, id) = state.withLock { s -> (Bool, Int) in
                s.nextID += 1
                if s.faults.refusing {
                    s.counters.refused += 1
                } else {
                    s.counters.connections += 1
                }
                return (s.faults.refusing, s.nextID)
            }
            if refuse {
                Self.resetAndClose(client)
                continue
            }
            guard let server = try? Self.connect(target) else {
                logger.warning("fault proxy cannot reach the target", metadata: ["target": "\(target)"])
                Self.resetAndClose(client)
                continue
            }
            let connection = Connection(client: client, server: server)
            let registered = state.withLock { s -> Bool in
                guard !s.stopped else { return false }
                s.open[id] = connection
                return true
            }
            guard registered else {
                close(client)
                close(server)
                break
            }
            for toTarget in [true, false] {
                let thread = Thread { [self] in
                    pump(connection, toTarget: toTarget)
                    if connection.pumpFinished() { _ = state.withLock { $0.open.removeValue(forKey: id) } }
                }
                thread.name = "fault-proxy-pump"
                thread.start()
            }
        }
    }

    /// Copies one direction until either side closes or the connection is cut.
    private func pump(_ connection: Connection, toTarget: Bool) {
        let from = toTarget ? connection.client : connection.server
        let to = toTarget ? connection.server : connection.client
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
            guard n > 0, !connection.isCut else { break }
            // A partition holds the data; the connection stays open and silent.
            while state.withLock({ $0.faults.partitioned && !$0.stopped }) && !connection.isCut {
                usleep(20_000)
            }
            guard !connection.isCut else { break }
            // The first bytes back after a request start a reply: maybe it is lost.
            if !toTarget && connection.replyStarts() && shouldDropReply() {
                connection.cut()
                break
            }
            let faults = state.withLock { $0.faults }
            if faults.latencyMs > 0 { usleep(useconds_t(faults.latencyMs * 1000)) }
            // Marked before forwarding: the reply may come back before sendAll returns.
            if toTarget { connection.requestSent() }
            guard Self.sendAll(to, buffer, count: n) else { break }
            state.withLock {
                if toTarget { $0.counters.bytesToTarget += Int64(n) } else { $0.counters.bytesToClient += Int64(n) }
            }
            if faults.bytesPerSecond > 0 {
                usleep(useconds_t(min(Double(n) / Double(faults.bytesPerSecond) * 1_000_000, 10_000_000)))
            }
        }
        // Pass the end of this direction on (a half-close), as TCP would.
        shutdown(to, Int32(SHUT_WR))
    }

    private func shouldDropReply() -> Bool {
        state.withLock { s in
            guard s.faults.dropResponses > 0, Double.random(in: 0..<1, using: &s.random) < s.faults.dropResponses else { return false }
            s.counters.responsesDropped += 1
            s.counters.cut += 1
            return true
        }
    }

    /// Both sockets of one proxied connection.
    private final class Connection: Sendable {
        let client: Int32
        let server: Int32
        private let cutFlag = Atomic(false)
        private let pumpsRunning = Atomic(2)
        private let awaitingReply = Atomic(false)
        /// Guards the sockets: once closed, their numbers may belong to someone else, so a
        /// late `cut` must not touch them.
        private let closed = Mutex(false)

        init(client: Int32, server: Int32) {
            self.client = client
            self.server = server
        }

        func requestSent() { awaitingReply.store(true, ordering: .releasing) }

        /// True for the first chunk from the target after a request.
        func replyStarts() -> Bool { awaitingReply.exchange(false, ordering: .acquiringAndReleasing) }

        var isCut: Bool { cutFlag.load(ordering: .acquiring) }

        /// Ends both directions at once; the pumps wake and finish.
        func cut() {
            cutFlag.store(true, ordering: .releasing)
            closed.withLock { closed in
                guard !closed else { return }
                shutdown(client, Int32(SHUT_RDWR))
                shutdown(server, Int32(SHUT_RDWR))
            }
        }

        /// Called by each pump as it ends; the last one closes the sockets. True for the last.
        func pumpFinished() -> Bool {
            guard pumpsRunning.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return false }
            closed.withLock { closed in
                closed = true
                close(client)
                close(server)
            }
            return true
        }
    }

    // MARK: sockets

    private static func bind(_ endpoint: Endpoint) throws(ProxyError) -> (Int32, Int) {
        var address = try socketAddress(endpoint)
        let fd = socket(Int32(address.ss_family), Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProxyError("cannot create a socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let length = socklen_t(address.ss_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 128) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw ProxyError("cannot listen on \(endpoint): \(message)")
        }
        var actual = sockaddr_storage()
        var actualLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &actualLength) } }
        let port = withUnsafePointer(to: &actual) { pointer -> Int in
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        return (fd, port)
    }

    private static func connect(_ endpoint: Endpoint) throws(ProxyError) -> Int32 {
        var address = try socketAddress(endpoint)
        let fd = socket(Int32(address.ss_family), Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProxyError("cannot create a socket") }
        let length = socklen_t(address.ss_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) } }
        guard rc == 0 else {
            close(fd)
            throw ProxyError("cannot connect to \(endpoint)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Numeric IPv4 or IPv6 addresses only: the proxy is for loopback links in tests.
    private static func socketAddress(_ endpoint: Endpoint) throws(ProxyError) -> sockaddr_storage {
        var storage = sockaddr_storage()
        let host = endpoint.host == "localhost" ? "127.0.0.1" : endpoint.host
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(endpoint.port).bigEndian)
            withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee = v4 } }
            return storage
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(endpoint.port).bigEndian)
            withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee = v6 } }
            return storage
        }
        throw ProxyError("'\(endpoint.host)' is not a numeric IPv4 or IPv6 address")
    }

    private static func sendAll(_ fd: Int32, _ buffer: [UInt8], count: Int) -> Bool {
        var offset = 0
        while offset < count {
            let sent = buffer.withUnsafeBytes { send(fd, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    /// Closes with a TCP reset, as a host with nothing listening would answer.
    private static func resetAndClose(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }
}

public struct ProxyError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
