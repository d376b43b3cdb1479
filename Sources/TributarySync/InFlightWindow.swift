/// How many batches the uploader sends at once, adapted like TCP's congestion window:
/// additive increase after a round the aggregator fully acknowledged, multiplicative decrease
/// after a round with a 429, 503 or timeout. The window never leaves `1...limit`.
public struct InFlightWindow: Sendable {
    public let limit: Int
    public private(set) var size: Int

    public init(limit: Int) {
        self.limit = max(1, limit)
        size = 1
    }

    public mutating func acknowledgedRound() {
        size = min(limit, size + 1)
    }

    public mutating func congestedRound() {
        size = max(1, size / 2)
    }
}
