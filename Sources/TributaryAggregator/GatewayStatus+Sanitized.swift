import TributaryCore
import TributaryWire

extension Tributary_V1_GatewayStatus {
    /// The largest count kept; bigger claims are held here, so sums over a fleet cannot overflow.
    static let maxCount: UInt64 = 1 << 48
    /// Times outside 1970 ... year 10000 are dropped (0: unknown).
    static let plausibleMs: ClosedRange<Int64> = 0...253_402_300_800_000

    /// What a gateway says about itself, made safe to store and show: `/v1/batches` is open to
    /// any client, and a status is only display data, so odd values are clamped rather than
    /// the batch refused. Text loses control characters (they would reach operators'
    /// terminals), rates must be finite (JSON has no NaN), counts and times are bounded.
    func sanitized() -> Self {
        var s = self
        s.agentVersion = Printable.clean(s.agentVersion, maxLength: 64)
        s.lastError = Printable.clean(s.lastError, maxLength: 512)
        s.aggregator = Printable.clean(s.aggregator, maxLength: 256)
        s.failoversTotal = Swift.min(s.failoversTotal, Self.maxCount)
        // Stored with the status, so bounded here: a few kinds of short text.
        s.quarantineReasons = s.quarantineReasons.prefix(5).map { r in
            var r = r
            r.kind = Printable.clean(r.kind, maxLength: 80)
            r.example = Printable.clean(r.example, maxLength: 300)
            r.count = Swift.min(r.count, Self.maxCount)
            return r
        }
        for keyPath in [\Self.backlogReadings, \.backlogBytes, \.ingestedTotal, \.acknowledgedTotal, \.quarantinedTotal,
                        \.droppedTotal, \.sealedBatches, \.setAsideBatches, \.redeliveriesTotal, \.roundReadings, \.withheldTotal] {
            s[keyPath: keyPath] = Swift.min(s[keyPath: keyPath], Self.maxCount)
        }
        for keyPath in [\Self.oldestUnsentMs, \.lastErrorMs, \.clockMs, \.roundOldestMs] where !Self.plausibleMs.contains(s[keyPath: keyPath]) {
            s[keyPath: keyPath] = 0
        }
        for keyPath in [\Self.ingestRate, \.sendRate] {
            let rate = s[keyPath: keyPath]
            s[keyPath: keyPath] = rate.isFinite ? Swift.min(Swift.max(rate, 0), 1e12) : 0
        }
        return s
    }
}
