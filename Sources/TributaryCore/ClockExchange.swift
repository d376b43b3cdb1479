/// One request and its answer, timed on both ends as NTP does. The gateway's clock gives
/// `clientSentMs` (t1) and `clientReceivedMs` (t4), the aggregator's `serverReceivedMs` (t2) and
/// `serverSentMs` (t3). Assuming the network takes as long each way, the gateway's clock is
/// ahead of the aggregator's by `-offsetMs`, with an error of at most half the round trip.
public struct ClockExchange: Sendable, Equatable {
    public var clientSentMs: Int64
    public var serverReceivedMs: Int64
    public var serverSentMs: Int64
    public var clientReceivedMs: Int64

    public init(clientSentMs: Int64, serverReceivedMs: Int64, serverSentMs: Int64, clientReceivedMs: Int64) {
        self.clientSentMs = clientSentMs
        self.serverReceivedMs = serverReceivedMs
        self.serverSentMs = serverSentMs
        self.clientReceivedMs = clientReceivedMs
    }

    /// All four times are known, plausible, and in order on each clock. (Plausible: between 1970
    /// and the year 10000, so that the arithmetic below cannot overflow whatever a client sends.)
    public var isComplete: Bool {
        let plausible: ClosedRange<Int64> = 1...253_402_300_800_000
        return [clientSentMs, serverReceivedMs, serverSentMs, clientReceivedMs].allSatisfy(plausible.contains)
            && serverSentMs >= serverReceivedMs && clientReceivedMs >= clientSentMs
    }

    /// The gateway's clock minus the aggregator's (positive: the gateway is ahead).
    /// NTP's offset θ = ((t2 - t1) + (t3 - t4)) / 2 is the server's clock minus the client's.
    public var gatewayAheadMs: Int64 {
        -((serverReceivedMs - clientSentMs) + (serverSentMs - clientReceivedMs)) / 2
    }

    /// Time on the network, without the time the aggregator held the request: δ = (t4 - t1) - (t3 - t2).
    public var roundTripMs: Int64 {
        max(0, (clientReceivedMs - clientSentMs) - (serverSentMs - serverReceivedMs))
    }
}
