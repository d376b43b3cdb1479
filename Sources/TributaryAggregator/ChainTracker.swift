import TributaryAdminAPI
import TributaryCore
import TributaryWire

/// A batch's place in its chain: its own digest and the one it names as its previous batch's
/// (lowercase hex; `previous` empty when the sender does not chain).
public struct ChainLink: Codable, Sendable, Equatable {
    public let digest: String
    public let previous: String

    public init(digest: String, previous: String) {
        self.digest = digest
        self.previous = previous
    }
}

/// One gateway epoch's hash chain as the aggregator follows it, batch by batch. Batches may
/// arrive out of order (an agent sends several at once, and retries), so those past a hole wait
/// in `pending` until the hole fills; a hole still open after `gapAfterMs`, or with more than
/// `maxPending` batches past it, is declared a gap and checking goes on after it.
/// Digests are kept as hex: the state is stored as JSON in the registry.
struct ChainTracker: Codable, Sendable, Equatable {
    static let maxPending = 64
    static let gapAfterMs: Int64 = 10 * 60 * 1000

    struct Pending: Codable, Sendable, Equatable {
        var link: ChainLink
        var arrivedMs: Int64
    }

    private(set) var view: ChainView
    /// Digest of batch `checkedThrough`, which the next batch must carry.
    private var head: String
    /// What batch `startSequence` said came before it: an earlier batch arriving late extends
    /// the start backwards when it matches.
    private var startPrevious: String
    private var pending: [UInt64: Pending] = [:]
    /// Holes declared gaps, kept so a batch that arrives after all (a long retry) takes its
    /// gap back; the oldest are forgotten past `maxDeclared`.
    private var declared: [ClosedRange<UInt64>] = []
    static let maxDeclared = 256
    /// Runs of checked batches ended by a gap, and batches that filled a gap late, oldest first
    /// (at most `maxDeclared`): with the run being checked now, what `ChainView.merged` joins
    /// with other aggregators' runs. Optional, so state stored before it decodes.
    private var closed: [ChainSegment]?
    /// Where the run being checked now began, and the previous digest its first batch named;
    /// nil: at `view.startSequence`, naming `startPrevious`.
    private var runStart: UInt64?
    private var runPrevious: String?
    /// The last sequence of the runs forgotten past `maxDeclared`: the joined view must not
    /// take what this aggregator held there for missing.
    private var forgottenThrough: UInt64?

    /// The first batch seen of an epoch starts the chain, whatever its sequence: an aggregator
    /// that joins late, or lost its registry, checks from there.
    init(epoch: String, sequence: UInt64, link: ChainLink) {
        view = ChainView(epoch: epoch, startSequence: sequence)
        view.checkedThrough = sequence
        view.highestSeen = sequence
        head = link.digest
        startPrevious = link.previous
    }

    /// Takes batch `sequence`, accepted by the sink.
    mutating func add(sequence: UInt64, link: ChainLink, atMs: Int64) {
        // The decoder refuses sequences past Int64.max; this keeps every `+ 1` below safe whoever calls.
        guard sequence < UInt64.max else { return }
        guard sequence > view.checkedThrough else {
            if sequence == view.startSequence.subtractingClamped(1), !startPrevious.isEmpty {
                guard link.digest == startPrevious else {
                    return problem("batch \(sequence) is not the batch \(sequence + 1) names as its previous one: one of them was altered", atMs: atMs, mismatch: true)
                }
                view.startSequence = sequence
                startPrevious = link.previous
                if closed?.isEmpty == false {
                    closed![0].from = sequence
                    closed![0].previous = link.previous
                }
            }
            if let index = declared.firstIndex(where: { $0.contains(sequence) }) {
                retract(sequence, from: index, atMs: atMs)
                keep(ChainSegment(from: sequence, through: sequence, previous: link.previous, digest: link.digest))
            }
            return  // a resend of a batch already checked, or older than the start
        }
        view.highestSeen = max(view.highestSeen, sequence)
        pending[sequence] = Pending(link: link, arrivedMs: atMs)
        advance(nowMs: atMs)
    }

    private mutating func advance(nowMs: Int64) {
        while true {
            while let next = pending.removeValue(forKey: view.checkedThrough + 1) {
                let sequence = view.checkedThrough + 1
                if next.link.previous.isEmpty {
                    view.unchained = view.unchained.addingClamped(1)
                } else if next.link.previous != head {
                    problem("batch \(sequence) names a previous batch that is not the batch \(sequence - 1) received: one of them was altered",
                            atMs: next.arrivedMs, mismatch: true)
                }
                view.checkedThrough = sequence
                head = next.link.digest
            }
            guard let oldest = pending.values.map(\.arrivedMs).min(), let lowest = pending.keys.min() else { break }
            guard pending.count > Self.maxPending || nowMs.saturatingMinus(oldest) > Self.gapAfterMs else { break }
            // The hole is given up on: the batch after it starts the chain again, unchecked.
            let missing = lowest.subtractingClamped(view.checkedThrough).subtractingClamped(1)
            view.gaps = view.gaps.addingClamped(1)
            view.missingBatches = view.missingBatches.addingClamped(missing)
            problem(missing == 1 ? "batch \(lowest - 1) never arrived"
                                 : "batches \(view.checkedThrough + 1) to \(lowest - 1) never arrived", atMs: nowMs)
            declared.append(view.checkedThrough + 1...lowest - 1)
            if declared.count > Self.maxDeclared { declared.removeFirst() }
            let after = pending.removeValue(forKey: lowest)!
            keep(currentRun)
            runStart = lowest
            runPrevious = after.link.previous
            view.checkedThrough = lowest
            head = after.link.digest
        }
        view.waiting = view.highestSeen.subtractingClamped(view.checkedThrough).subtractingClamped(UInt64(pending.count))
        view.waitingSinceMs = pending.values.map(\.arrivedMs).min() ?? 0
    }

    /// A batch of a declared gap arrived after all: it was late, not lost. (Its links were not
    /// checked: its neighbours were taken without it.) `gaps` counts the holes still open, so a
    /// hole filled in its middle becomes two, and one filled whole is gone.
    private mutating func retract(_ sequence: UInt64, from index: Int, atMs: Int64) {
        let range = declared.remove(at: index)
        var remaining = 0
        if range.lowerBound < sequence {
            declared.append(range.lowerBound...sequence - 1)
            remaining += 1
        }
        if sequence < range.upperBound {
            declared.append(sequence + 1...range.upperBound)
            remaining += 1
        }
        // Saturating: the counts come from what clients sent (and from stored state), and no
        // arrival order may trap the aggregator.
        view.missingBatches = view.missingBatches.subtractingClamped(1)
        switch remaining {
        case 0: view.gaps = view.gaps.subtractingClamped(1)
        case 2: view.gaps = view.gaps.addingClamped(1)
        default: break
        }
        view.lastProblem = "batch \(sequence) arrived after its gap was declared"
        view.lastProblemMs = atMs
    }

    /// The run being checked now: from its start through `checkedThrough`.
    private var currentRun: ChainSegment {
        let start = runStart ?? view.startSequence
        return ChainSegment(from: start, through: view.checkedThrough, previous: runPrevious ?? (start == view.startSequence ? startPrevious : ""),
                            digest: head)
    }

    private mutating func keep(_ run: ChainSegment) {
        closed = (closed ?? []) + [run]
        if closed!.count > Self.maxDeclared {
            let forgotten = closed!.removeFirst()
            forgottenThrough = max(forgottenThrough ?? 0, forgotten.through)
        }
    }

    /// The runs past the hole, which wait for it to fill, each linked within itself unchecked.
    private var waitingRuns: [ChainSegment] {
        var runs: [ChainSegment] = []
        for sequence in pending.keys.sorted() {
            let link = pending[sequence]!.link
            if let last = runs.last, last.through + 1 == sequence {
                runs[runs.count - 1].through = sequence
                runs[runs.count - 1].digest = link.digest
            } else {
                runs.append(ChainSegment(from: sequence, through: sequence, previous: link.previous, digest: link.digest, waiting: true))
            }
        }
        return runs
    }

    private mutating func problem(_ text: String, atMs: Int64, mismatch: Bool = false) {
        if mismatch { view.mismatches = view.mismatches.addingClamped(1) }
        view.lastProblem = text
        view.lastProblemMs = atMs
    }

    /// The view as of `nowMs`: a hole is declared a gap once it is old enough, even if no
    /// batch has come since to notice.
    func view(nowMs: Int64) -> ChainView {
        var copy = self
        copy.advance(nowMs: nowMs)
        var view = copy.view
        view.segments = (copy.closed ?? []) + [copy.currentRun] + copy.waitingRuns
        view.forgottenThrough = copy.forgottenThrough
        return view
    }
}
