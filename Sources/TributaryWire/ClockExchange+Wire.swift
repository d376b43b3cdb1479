import TributaryCore

/// The four NTP timestamps between the domain type and the status message, as `BatchId` does for
/// batch identities.
extension Tributary_V1_ClockExchange {
    public init(_ exchange: ClockExchange) {
        self.init()
        clientSentMs = exchange.clientSentMs
        serverReceivedMs = exchange.serverReceivedMs
        serverSentMs = exchange.serverSentMs
        clientReceivedMs = exchange.clientReceivedMs
    }

    public var exchange: ClockExchange {
        ClockExchange(clientSentMs: clientSentMs, serverReceivedMs: serverReceivedMs, serverSentMs: serverSentMs,
                      clientReceivedMs: clientReceivedMs)
    }
}
