import Foundation
import Logging
import NIOCore
import Synchronization

/// What slow, stuck or greedy clients may cost the aggregator: connections and requests in
/// flight, per client address and in all, and how long a request may take to arrive. Shared by
/// every connection of one server. Each refusal and cut-off is counted and logged (the first
/// of each kind per address and minute), so an operator sees who is doing it.
public final class ConnectionLimits: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Open connections in all; past it a new one is closed at once. Default 16384.
        public var maxConnections = 16_384
        /// Open connections from one address (a NAT'd fleet shares one). Default 256.
        public var maxConnectionsPerAddress = 256
        /// One address's share of admission control: requests from it admitted toward the sink at
        /// once, past which it gets 429 while the aggregator is busy. Default 16.
        public var maxInFlightPerAddress = 16
        /// Request bytes (declared lengths) of one address's share, a quarter of
        /// `max_in_flight_bytes` by default; one request is always admitted, however large.
        public var maxInFlightBytesPerAddress = 16 << 20
        /// The whole of admission control (`limits.max_in_flight_batches` and
        /// `max_in_flight_bytes`). The shares above are enforced once half of either is taken:
        /// while there is room, gateways behind one NAT'd address are not held to one share;
        /// when there is not, one address cannot take more than half plus its share.
        public var admissionBatches = 256
        public var admissionBytes = 64 << 20
        /// A request's head (request line and headers) must arrive whole this long after its
        /// first byte. Default 10 s.
        public var headerTimeout: TimeAmount = .seconds(10)
        /// A request body may take this long plus its length at `minBodyBytesPerSecond`. Default 10 s.
        public var bodyTimeout: TimeAmount = .seconds(10)
        /// The slowest upload taken: 16 KiB/s by default (a 1 MiB batch gets 10 + 64 s).
        public var minBodyBytesPerSecond = 16_384
        /// A connection with no request in progress is closed after this long. Default 75 s,
        /// longer than an idle agent's heartbeat (30 s), so its connection stays open.
        public var idleTimeout: TimeAmount = .seconds(75)
        public init() {}

        /// How long a body of `length` bytes may take to arrive.
        func bodyDeadline(length: Int) -> TimeAmount {
            bodyTimeout + .nanoseconds(Int64(Double(max(length, 0)) / Double(max(minBodyBytesPerSecond, 1)) * 1e9))
        }
    }

    /// What was refused or cut off since start, for the fleet view and `/metrics`.
    public struct Counts: Sendable, Equatable {
        public var openConnections = 0
        public var connectionsRefused = 0
        public var addressBusyRefusals = 0
        public var headTimeouts = 0
        public var bodyTimeouts = 0
    }

    public let settings: Settings
    /// `admissionBatches` and `admissionBytes` as a reload left them.
    private let admission: Mutex<(batches: Int, bytes: Int, perAddressBytes: Int)>

    /// A reload's `limits.max_in_flight_batches` and `max_in_flight_bytes`: what "busy" means
    /// for the per-address shares.
    /// A reload's admission: the totals, and one address's bytes while busy (by default a
    /// quarter of the total, so it follows `max_in_flight_bytes`).
    func setAdmission(batches: Int, bytes: Int, perAddressBytes: Int) { admission.withLock { $0 = (batches, bytes, perAddressBytes) } }
    private let logger: Logger
    private struct State {
        var connections: [String: Int] = [:]
        var inFlight: [String: (requests: Int, bytes: Int)] = [:]
        var inFlightTotal = (requests: 0, bytes: 0)
        var total = 0
        var counts = Counts()
        /// When each address was last logged for each kind of refusal (a flood is one line a minute).
        var lastLogged: [String: ContinuousClock.Instant] = [:]
    }
    private let state = Mutex(State())

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        admission = Mutex((settings.admissionBatches, settings.admissionBytes, settings.maxInFlightBytesPerAddress))
        self.logger = logger
    }

    public var counts: Counts {
        state.withLock { s in
            var counts = s.counts
            counts.openConnections = s.total
            return counts
        }
    }

    /// A new connection from `address`: false when it must be closed at once.
    func open(from address: String) -> Bool {
        let refusal: String? = state.withLock { s in
            if s.total >= settings.maxConnections {
                s.counts.connectionsRefused += 1
                return "the aggregator has \(s.total) connections open (limits.max_connections)"
            }
            if s.connections[address, default: 0] >= settings.maxConnectionsPerAddress {
                s.counts.connectionsRefused += 1
                return "\(address) has \(settings.maxConnectionsPerAddress) connections open (limits.max_connections_per_address)"
            }
            s.total += 1
            s.connections[address, default: 0] += 1
            return nil
        }
        if let refusal { note("connection refused", refusal, address: address) }
        return refusal == nil
    }

    func close(from address: String) {
        state.withLock { s in
            s.total -= 1
            let left = s.connections[address, default: 1] - 1
            s.connections[address] = left > 0 ? left : nil
        }
    }

    /// Admits one more request of `bytes` (its declared length) from `address` toward the
    /// sink, or says why not: past its share, and only while half of admission is taken.
    func admit(from address: String, bytes: Int) -> Bool {
        let admission = self.admission.withLock { $0 }
        let refusal: String? = state.withLock { s in
            let now = s.inFlight[address] ?? (0, 0)
            let busy = s.inFlightTotal.requests * 2 >= admission.batches || s.inFlightTotal.bytes * 2 >= admission.bytes
            if !busy {
                // Room for everyone: no share is enforced.
            } else if now.requests >= settings.maxInFlightPerAddress {
                s.counts.addressBusyRefusals += 1
                return "\(address) has \(now.requests) requests in flight while the aggregator is busy (limits.max_in_flight_per_address)"
            } else if now.requests > 0 && now.bytes + bytes > admission.perAddressBytes {
                s.counts.addressBusyRefusals += 1
                return "\(address) has \(now.bytes) bytes in flight while the aggregator is busy (limits.max_in_flight_bytes_per_address)"
            }
            s.inFlight[address] = (now.requests + 1, now.bytes + bytes)
            s.inFlightTotal = (s.inFlightTotal.requests + 1, s.inFlightTotal.bytes + bytes)
            return nil
        }
        if let refusal { note("request refused (429)", refusal, address: address) }
        return refusal == nil
    }

    func finish(from address: String, bytes: Int) {
        state.withLock { s in
            let now = s.inFlight[address] ?? (1, bytes)
            s.inFlight[address] = now.requests > 1 ? (now.requests - 1, max(0, now.bytes - bytes)) : nil
            s.inFlightTotal = (max(0, s.inFlightTotal.requests - 1), max(0, s.inFlightTotal.bytes - bytes))
        }
    }

    /// A request cut off because its head or body did not arrive in time.
    func cutOff(_ what: CutOff, from address: String) {
        state.withLock { s in
            switch what {
            case .head: s.counts.headTimeouts += 1
            case .body: s.counts.bodyTimeouts += 1
            }
        }
        let reason = switch what {
        case .head: "its head did not arrive within \(Self.seconds(settings.headerTimeout)) s (limits.header_timeout_seconds)"
        case .body: "its body arrived slower than \(settings.minBodyBytesPerSecond) bytes/s after \(Self.seconds(settings.bodyTimeout)) s (limits.min_body_bytes_per_second)"
        }
        note("request cut off and connection closed", reason, address: address)
    }

    enum CutOff { case head, body }

    private func note(_ message: String, _ reason: String, address: String) {
        let now = ContinuousClock.now
        let due = state.withLock { s in
            let key = message + " " + address
            if let last = s.lastLogged[key], now - last < .seconds(60) { return false }
            if s.lastLogged.count > 10_000 { s.lastLogged.removeAll() }
            s.lastLogged[key] = now
            return true
        }
        guard due else { return }
        logger.warning("\(message)", metadata: ["peer": "\(address)", "reason": "\(reason)", "repeats": "logged once a minute per address"])
    }

    static func seconds(_ time: TimeAmount) -> Int64 { time.nanoseconds / 1_000_000_000 }

    /// The address part of a peer (the port varies per connection), "unknown" without one.
    static func address(of channel: any Channel) -> String {
        channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
