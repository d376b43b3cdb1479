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
    /// The runs of consecutive batches this aggregator holds, checked link by link within each
    /// run, with each run's first previous digest and last digest: what `merged` joins when a
    /// gateway's batches went to several aggregators (failover). Nil from an older aggregator.
    public var segments: [ChainSegment]?
    /// Runs older than the last 256 are no longer listed in `segments`: this aggregator held
    /// batches from `startSequence` through here (with the gaps it counted). Nil: none forgotten.
    public var forgottenThrough: UInt64?

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

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(epoch: try c.decode(String.self, forKey: .epoch), startSequence: try c.decode(UInt64.self, forKey: .startSequence))
        checkedThrough = try c.decode(UInt64.self, forKey: .checkedThrough)
        highestSeen = try c.decode(UInt64.self, forKey: .highestSeen)
        waiting = try c.decode(UInt64.self, forKey: .waiting)
        waitingSinceMs = try c.decode(Int64.self, forKey: .waitingSinceMs)
        gaps = try c.decode(UInt64.self, forKey: .gaps)
        missingBatches = try c.decode(UInt64.self, forKey: .missingBatches)
        mismatches = try c.decode(UInt64.self, forKey: .mismatches)
        unchained = try c.decode(UInt64.self, forKey: .unchained)
        lastProblem = try c.decode(String.self, forKey: .lastProblem)
        lastProblemMs = try c.decode(Int64.self, forKey: .lastProblemMs)
        segments = try c.decodeIfPresent([ChainSegment].self, forKey: .segments)
        forgottenThrough = try c.decodeIfPresent(UInt64.self, forKey: .forgottenThrough)
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
        case segments
        case forgottenThrough = "forgotten_through"
    }
}

/// Batches `from` through `through` of one epoch, all held by one aggregator and linked one to
/// the next. `previous` is the digest batch `from` names as its predecessor's (empty when it
/// names none); `digest` is batch `through`'s own. `waiting`: the run lies past a hole this
/// aggregator still waits to see filled (not yet checked against what came before).
public struct ChainSegment: Codable, Sendable, Equatable {
    public var from: UInt64
    public var through: UInt64
    public var previous: String
    public var digest: String
    public var waiting: Bool

    public init(from: UInt64, through: UInt64, previous: String, digest: String, waiting: Bool = false) {
        self.from = from
        self.through = through
        self.previous = previous
        self.digest = digest
        self.waiting = waiting
    }
}

extension ChainView {
    /// One epoch's chain as several aggregators saw it, joined: a gateway that failed over sent
    /// batches 1-50 to one and 51-100 to another, and neither alone saw them all. The runs
    /// (`segments`) of every view are laid side by side; where one ends and the next begins, the
    /// next one's previous digest must be the first one's last digest (a mismatch otherwise), and
    /// a stretch no aggregator holds is missing: waiting while an aggregator that saw past it
    /// still waits for it, a gap once every such aggregator gave up on it (10 minutes, or 64
    /// batches, after the hole). Views of another epoch than the first one's are left out.
    /// Nil when a view lacks segments (an older aggregator): there is nothing to join.
    public static func merged(_ views: [ChainView]) -> ChainView? {
        guard let first = views.first else { return nil }
        let same = views.filter { $0.epoch == first.epoch }
        guard same.count > 1 else { return first }
        guard same.allSatisfy({ $0.segments != nil }) else { return nil }
        var merged = ChainView(epoch: first.epoch, startSequence: same.map(\.startSequence).min()!)
        merged.highestSeen = same.map(\.highestSeen).max()!
        merged.unchained = same.reduce(0) { $0.addingClamped($1.unchained) }
        merged.mismatches = same.reduce(0) { $0.addingClamped($1.mismatches) }
        // What an aggregator no longer lists run by run is taken as held, its seams unchecked.
        let forgotten = same.compactMap { v in v.forgottenThrough.map { ChainSegment(from: v.startSequence, through: $0, previous: "", digest: "") } }
        let runs = (same.flatMap { $0.segments! } + forgotten).sorted { ($0.from, $1.through) < ($1.from, $0.through) }
        guard var end = runs.first.map({ $0.from.subtractingClamped(1) }) else { return first }
        var endDigest = ""
        var problems: [String] = []
        var checkedUpTo: UInt64?  // set at the first hole still awaited
        for run in runs {
            if run.from > end.addingClamped(1) {
                let hole = end + 1...run.from - 1
                // Still awaited if an aggregator that holds batches past it has not passed it.
                let awaited = same.contains { v in v.checkedThrough < hole.lowerBound && v.highestSeen > hole.upperBound }
                if awaited {
                    if checkedUpTo == nil { checkedUpTo = end }
                    merged.waiting = merged.waiting.addingClamped(UInt64(hole.count))
                } else {
                    merged.gaps = merged.gaps.addingClamped(1)
                    merged.missingBatches = merged.missingBatches.addingClamped(UInt64(hole.count))
                    problems.append(hole.count == 1 ? "batch \(hole.lowerBound) is at no aggregator" : "batches \(hole.lowerBound) to \(hole.upperBound) are at no aggregator")
                }
            } else if run.from == end.addingClamped(1), !run.previous.isEmpty, !endDigest.isEmpty, run.previous != endDigest {
                merged.mismatches = merged.mismatches.addingClamped(1)
                problems.append("batch \(run.from) names a previous batch that is not the batch \(end) another aggregator holds: one of them was altered")
            }
            if run.through > end {
                end = run.through
                endDigest = run.digest
            } else if run.through == end, endDigest.isEmpty {
                endDigest = run.digest
            }
        }
        merged.checkedThrough = checkedUpTo ?? end
        merged.waitingSinceMs = merged.waiting > 0 ? same.map(\.waitingSinceMs).filter { $0 > 0 }.min() ?? 0 : 0
        merged.segments = runs
        if let problem = problems.last {
            merged.lastProblem = problem
            merged.lastProblemMs = same.map(\.lastProblemMs).max() ?? 0
        } else if merged.mismatches > 0, let latest = same.filter({ $0.mismatches > 0 }).max(by: { $0.lastProblemMs < $1.lastProblemMs }) {
            merged.lastProblem = latest.lastProblem
            merged.lastProblemMs = latest.lastProblemMs
        }
        return merged
    }
}

extension UInt64 {
    /// `self - other`, or 0 where that would go below zero.
    public func subtractingClamped(_ other: UInt64) -> UInt64 { self >= other ? self - other : 0 }
    /// `self + other`, or `UInt64.max` where that would overflow.
    public func addingClamped(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
