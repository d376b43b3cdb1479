import Logging
import Synchronization
import TributaryAdminAPI
import TributaryCore
import TributaryRuntime

/// Who was refused for their credentials (401 or 403), by the gateway they claimed: for the
/// fleet view, `tributaryctl check` and the log. Kept in memory (a restart forgets it; the
/// audit log has every request) and bounded: at most `capacity` claimed ids, the least recently
/// refused forgotten first, so senders inventing ids cannot grow it.
final class RefusedSenders: Sendable {
    private let entries = Mutex<[String: RefusedSender]>([:])
    private let capacity: Int
    private let logger: Logger
    /// News is logged at most once every 10 s: clients inventing ids must not flood the log.
    private let logThrottle = LogThrottle()

    init(capacity: Int = 256, logger: Logger) {
        self.capacity = capacity
        self.logger = logger
    }

    /// Records one refusal. The first refusal of a claimed id, and each change of its reason,
    /// is logged (a warning: the gateway delivers nothing until an operator acts), one line
    /// every 10 s at most, with how many such lines were held back.
    func record(claimed: String, reason: String, peer: String, atMs: Int64 = WallClock.nowMs()) {
        let claimed = Printable.clean(claimed, maxLength: 128)
        let reason = Printable.clean(reason, maxLength: 256)
        let isNews: Bool = entries.withLock { entries in
            if var entry = entries[claimed] {
                let changed = entry.lastReason != reason
                entry.refusals &+= 1
                entry.lastReason = reason
                entry.lastPeer = peer
                entry.lastAtMs = atMs
                entries[claimed] = entry
                return changed
            }
            if entries.count >= capacity, let oldest = entries.min(by: { $0.value.lastAtMs < $1.value.lastAtMs })?.key {
                entries[oldest] = nil
            }
            entries[claimed] = RefusedSender(claimedGateway: claimed, refusals: 1, lastReason: reason, lastPeer: peer, firstAtMs: atMs, lastAtMs: atMs)
            return true
        }
        guard isNews, let held = logThrottle.admit("refused credentials") else { return }
        logger.warning("a gateway's credentials were refused; it delivers nothing until they are fixed", metadata: [
            "claimed_gateway": "\(claimed.isEmpty ? "(none given)" : claimed)", "reason": "\(reason)", "peer": "\(peer)",
            "similar_held_back": "\(held)",
        ])
    }

    /// `gateway` proved who it is: it is no longer a refused sender (a fixed token shows at once,
    /// not after `stale_after_seconds`).
    func forget(_ gateway: String) {
        entries.withLock { $0[gateway] = nil }
    }

    /// Refused within the last `withinMs`, most recent first.
    func recent(nowMs: Int64, withinMs: Int64) -> [RefusedSender] {
        entries.withLock { entries in
            entries.values.filter { nowMs - $0.lastAtMs <= withinMs }.sorted { ($0.lastAtMs, $0.claimedGateway) > ($1.lastAtMs, $1.claimedGateway) }
        }
    }
}
