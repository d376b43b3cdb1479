import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwiftProtobuf
import TributaryCore
import TributaryCrypto
import TributaryRuntime
import TributaryWire

/// Sends one SyncRequest to an aggregator and says what became of it: the one client of the
/// wire contract, used by the agent, the fleet simulator's virtual gateways and the benchmark,
/// so that they all speak exactly as agents do. What it sees (each request's result and time,
/// the clock exchanges) goes to a `SyncObserver`.
public struct SyncClient: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// The aggregator's sink holds the batch (accepted now or before), or recorded the heartbeat.
        case acknowledged(duplicate: Bool)
        /// Not written; try again, not before `afterMs` when the server said so.
        case retry(afterMs: Int, reason: String)
        /// Not written, and resending the same batch cannot help.
        case rejected(reason: String)
        /// 409: the aggregator holds other readings under this batch's identity. The sender's
        /// buffer was rolled back and reuses identities: the batch must be sealed again under a
        /// new epoch (`BufferStore.renewEpoch`), never set aside.
        case identityTaken(reason: String)

        var reason: String {
            switch self {
            case .acknowledged: ""
            case .retry(_, let reason), .rejected(let reason), .identityTaken(let reason): reason
            }
        }
    }

    let http: HTTPClient
    /// Where requests go: one aggregator, or several with failover.
    public let targets: AggregatorTargets
    let encoding: ContentEncoding
    let timeout: TimeAmount
    let observer: any SyncObserver
    /// The gateway's token for an aggregator with gateway_auth.
    let token: String?
    /// The gateway it speaks for (`WireProtocol.gatewayHeader`).
    let gatewayID: String?
    /// What a connection failure's message tells the operator to set.
    public var troubleSettings = ConnectionTrouble.Settings.agent

    public init(http: HTTPClient, url: String, encoding: ContentEncoding, timeout: TimeAmount, observer: any SyncObserver, token: String? = nil,
                gatewayID: String? = nil) {
        self.init(http: http, targets: AggregatorTargets(urls: [url], senderID: gatewayID ?? ""), encoding: encoding, timeout: timeout,
                  observer: observer, token: token, gatewayID: gatewayID)
    }

    public init(http: HTTPClient, targets: AggregatorTargets, encoding: ContentEncoding, timeout: TimeAmount, observer: any SyncObserver,
                token: String? = nil, gatewayID: String? = nil) {
        self.http = http
        self.targets = targets
        self.encoding = encoding
        self.timeout = timeout
        self.observer = observer
        self.token = token
        self.gatewayID = gatewayID
    }

    /// The same client with another gateway token (a rotated `token_file`).
    public func replacingToken(_ token: String?) -> SyncClient {
        var client = SyncClient(http: http, targets: targets, encoding: encoding, timeout: timeout, observer: observer, token: token, gatewayID: gatewayID)
        client.troubleSettings = troubleSettings
        return client
    }

    /// Sends the request to the current aggregator; if that one does not answer or answers
    /// 5xx, to each other one in the sender's order at most once, at once (a failover costs no
    /// backoff). The last outcome is returned when none took it.
    public func send(_ request: Tributary_V1_SyncRequest, expecting identity: BatchIdentity?) async -> Outcome {
        let body: [UInt8]
        do {
            body = Compression.compress(try request.serializedBytes(), encoding: encoding)
        } catch {
            return .rejected(reason: "cannot encode the request: \(error)")
        }
        if let preferred = targets.claimProbe() { probeReadiness(of: preferred) }
        var url = targets.next()
        var tried: Set<String> = []
        while true {
            tried.insert(url)
            let (outcome, failed) = await send(body, to: url, expecting: identity)
            guard failed else {
                targets.answered(url)
                return outcome
            }
            // Cancelled (the sender stops): not the aggregator's failure.
            guard !Task.isCancelled, let next = targets.failed(url, reason: outcome.reason), !tried.contains(next) else { return outcome }
            url = next
        }
    }

    /// Asks the preferred aggregator's `/readyz` (no token needed) in the background, briefly:
    /// ready brings the sender back to it.
    private func probeReadiness(of url: String) {
        let http = self.http, targets = self.targets
        Task {
            var request = HTTPClientRequest(url: url + "/readyz")
            request.method = .GET
            guard let response = try? await http.execute(request, timeout: .seconds(2)) else { return }
            _ = try? await response.body.collect(upTo: 4096)
            if response.status == .ok { targets.answered(url) }
        }
    }

    /// One attempt at one aggregator; `failed` when it did not answer or answered 5xx.
    private func send(_ body: [UInt8], to url: String, expecting identity: BatchIdentity?) async -> (Outcome, failed: Bool) {
        let http = Self.batchRequest(url: url, body: ByteBuffer(bytes: body), encoding: encoding, token: token, gatewayID: gatewayID)
        let sentMs = WallClock.nowMs()
        let started = ContinuousClock.now
        do {
            let response = try await self.http.execute(http, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 1 << 20)
            let ack = try? Tributary_V1_Ack(serializedBytes: Array(buffer: bytes))
            if let ack {
                let exchange = ClockExchange(clientSentMs: sentMs, serverReceivedMs: ack.serverReceivedMs,
                                             serverSentMs: ack.serverTimeMs, clientReceivedMs: WallClock.nowMs())
                if exchange.isComplete { observer.clockExchanged(exchange) }
            }
            let outcome = interpret(status: response.status, headers: response.headers, ack: ack,
                                    text: String(buffer: bytes), identity: identity)
            observer.requestFinished(Self.counted(status: Int(response.status.code), ack: ack, outcome: outcome),
                                     after: ContinuousClock.now - started)
            return (outcome, (500...599).contains(Int(response.status.code)))
        } catch {
            observer.requestFinished(.unreachable, after: ContinuousClock.now - started)
            return (.retry(afterMs: 0, reason: "aggregator unreachable: " + ConnectionTrouble.describe(error, url: url, settings: troubleSettings)), true)
        }
    }

    /// The POST of an encoded SyncRequest, with the headers the wire contract asks for (public
    /// for the benchmark and tests that send prepared bodies).
    public static func batchRequest(url: String, body: ByteBuffer, encoding: ContentEncoding, token: String?,
                                    gatewayID: String? = nil) -> HTTPClientRequest {
        var http = HTTPClientRequest(url: url + WireProtocol.batchesPath)
        http.method = .POST
        http.headers.add(name: "Content-Type", value: WireProtocol.protobufContentType)
        http.headers.add(name: WireProtocol.versionHeader, value: WireProtocol.version)
        if encoding != .identity { http.headers.add(name: "Content-Encoding", value: encoding.rawValue) }
        if let token { http.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let gatewayID { http.headers.add(name: WireProtocol.gatewayHeader, value: gatewayID) }
        http.body = .bytes(body)
        return http
    }

    /// The word counted for an answer: the status's, except that a 200 this client could not
    /// take (an ack naming another batch) is counted as the aggregator not taking it.
    static func counted(status: Int, ack: Tributary_V1_Ack?, outcome: Outcome) -> RequestOutcome {
        if status == 200, case .retry = outcome { return .unavailable }
        return RequestOutcome(httpStatus: status, ack: ack)
    }

    func interpret(status: HTTPResponseStatus, headers: HTTPHeaders, ack: Tributary_V1_Ack?, text: String, identity: BatchIdentity?) -> Outcome {
        let retryAfterMs = headers.first(name: "Retry-After").flatMap(Int.init).map { $0 * 1000 }
            ?? Int(ack?.retryAfterMs ?? 0)
        let reason = ack?.reason.isEmpty == false ? ack!.reason : String(text.prefix(300))
        switch status.code {
        case 200:
            guard let ack else { return .retry(afterMs: 0, reason: "aggregator answered 200 without an ack") }
            if let identity, ack.batchID.identity != identity {
                return .retry(afterMs: 0, reason: "ack names batch \(ack.batchID.identity), expected \(identity)")
            }
            switch ack.outcome {
            case .accepted, .heartbeat: return .acknowledged(duplicate: false)
            case .duplicate: return .acknowledged(duplicate: true)
            case .rejected: return .rejected(reason: reason)
            default: return .retry(afterMs: retryAfterMs, reason: "aggregator: \(reason)")
            }
        case 409:
            return .identityTaken(reason: "aggregator answered 409: \(reason)")
        case 401, 403, 404:
            // Wrong credentials or URL: a configuration problem, not this batch's fault.
            return .retry(afterMs: retryAfterMs, reason: "aggregator answered \(status.code): \(reason)")
        case 408, 429, 500...599:
            return .retry(afterMs: retryAfterMs, reason: "aggregator answered \(status.code): \(reason)")
        default:
            return .rejected(reason: "aggregator answered \(status.code): \(reason)")
        }
    }
}
