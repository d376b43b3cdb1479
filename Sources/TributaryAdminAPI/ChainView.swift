import TributaryCore

/// What the aggregator made of one gateway epoch's hash chain: each batch carries the digest
/// of the one before, so a batch that never arrived shows as a gap and one that arrived
/// altered as a mismatch.
public struct ChainView: Codable, Sendable, Equatable {
    public var epoch: String
    /// Checking began here: the epoch's first batch, or the first this aggregator saw of it.
    public var startSequence: UInt64
    /// Every batch from `startSequence` through this one has arrived and been checked.
    public var checkedThrough: UInt64
    public var highestSeen: UInt64
    /// Batches missing between `checkedThrough` and `highestSeen` now: in flight, being
    /// retried, or lost. Declared a gap after 10 minutes or 64 batches past the hole.
    public var waiting: UInt64
    /// When the oldest batch past the hole arrived; 0 when nothing waits.
    public var waitingSinceMs: Int64
    /// Holes given up on, and the batches in them.
    public var gaps: UInt64
    public var missingBatches: UInt64
    /// Batches whose previous digest is not the digest of the batch before them.
    public var mismatches: UInt64
    /// Batches without a previous digest after the start (a sender that does not chain, or
    /// an agent's first batch after upgrading): their link cannot be checked.
    public var unchained: UInt64
    public var lastProblem: String
    public var lastProblemMs: Int64

    public init(epoch: String, startSequence: UInt64) {
        self.epoch = epoch
        self.startSequence = startSequence
        checkedThrough = 0
        highestSeen = 0
        waiting = 0
        waitingSinceMs = 0
        gaps = 0
        missingBatches = 0
        mismatches = 0
        unchained = 0
        lastProblem = ""
        lastProblemMs = 0
    }

    /// Nothing missing for good, nothing altered, every link checked.
    public var intact: Bool { gaps == 0 && mismatches == 0 && unchained == 0 }
    /// Batches never arrived or arrived altered: what the fleet summary counts. (Unchained
    /// batches are only shown per gateway: a sender that does not chain is not a loss.)
    public var broken: Bool { gaps > 0 || mismatches > 0 }

    enum CodingKeys: String, CodingKey {
        case epoch
        case startSequence = "start_sequence"
        case checkedThrough = "checked_through"
        case highestSeen = "highest_seen"
        case waiting
        case waitingSinceMs = "waiting_since_ms"
        case gaps
        case missingBatches = "missing_batches"
        case mismatches
        case unchained
        case lastProblem = "last_problem"
        case lastProblemMs = "last_problem_ms"
    }
}
