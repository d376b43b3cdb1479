import Foundation
import Logging
import Synchronization
import TributaryBuffer
import TributaryCore
import TributaryRuntime
import TributarySQLite

/// Whether the buffer takes the committer's next group, and committing it while the disk
/// refuses: the quota (`block` waits, `drop_oldest` frees the oldest unsent readings, each
/// counted) and the disk reserve. Waiting here is how backpressure reaches the broker: the
/// ingest queue fills, the MQTT thread stops reading, and the broker holds the rest for the
/// persistent session. Used by the committer thread alone.
struct BufferAdmission: Sendable {
    let buffer: BufferStore
    /// The quota and the full policy, which a reload changes (see `LiveBufferSettings`).
    let live: LiveBufferSettings
    var settings: AgentConfig.Buffer { live.value }
    let gatewayID: String
    let stats: AgentStats
    let logger: Logger
    let reserve: DiskReserve
    private var lastReserveCheckMs: Int64 = 0
    private var lastHeadroomWarningMs: Int64 = Int64.min / 2
    /// When a stopping agent gives up committing, for every group still queued: one deadline for
    /// the whole stop, not one per group (with a full disk and a full queue, per-group deadlines
    /// made a stop last minutes, past any service manager's stop timeout).
    private var shutdownDeadlineMs: Int64?
    /// Whether the log has said once that the quota is below the buffer's own keeping.
    private var overheadReported = false
    /// Readings given up because the buffer could not be written while shutting down.
    private(set) var abandonedOnShutdown = 0

    /// How long a stopping agent keeps trying to commit what it holds when the buffer cannot
    /// be written.
    static let shutdownCommitMs: Int64 = 10_000

    init(config: AgentConfig, buffer: BufferStore, stats: AgentStats, logger: Logger) {
        self.buffer = buffer
        live = LiveBufferSettings(config.buffer)
        gatewayID = config.gatewayID
        self.stats = stats
        self.logger = logger
        reserve = DiskReserve(config: config)
    }

    /// At start, before any message is read.
    func takeReserve() {
        guard !reserve.take() else { return }
        logger.warning("cannot set aside the disk reserve; a full disk may stall the buffer until space is freed", metadata: [
            "path": "\(reserve.path)", "bytes": "\(reserve.bytes)",
        ])
    }

    /// Returns once the buffer is below its quota (freeing the oldest unsent readings first
    /// under `drop_oldest`), or at once while shutting down: what was received is already
    /// acknowledged to the broker, so keeping it a little over the quota beats losing it.
    mutating func waitForRoom(isShuttingDown: () -> Bool) {
        guard settings.maxBytes > 0 else { return }
        var blocked = false
        var delay = 0.02
        defer {
            if blocked {
                stats.bufferFull = false
                logger.notice("buffer below its quota again; reading from the broker", metadata: ["gateway": "\(gatewayID)"])
            }
        }
        while true {
            // Asked each time: a reload may raise the quota (or lift it) while the buffer waits.
            let settings = self.settings
            let quota = settings.maxBytes
            if quota == 0 { return }
            do {
                let used = try buffer.quotaBytesInUse()
                if used < quota { return }
                // Nothing waits for an aggregator, so no acknowledgement will ever free a page:
                // what fills the quota is the buffer's own keeping (schema, the saved redelivery
                // window, quarantined payloads, set-aside batches). Waiting would stall ingest
                // for good (a 64 KiB quota held 15,000 readings back after a restart); take the
                // group, and the next waits for its delivery.
                let pending = buffer.snapshot
                if pending.unsealedReadings <= 0 && pending.sealedReadings <= 0 {
                    if !overheadReported {
                        overheadReported = true
                        logger.warning("buffer quota of \(quota) bytes is below what the buffer keeps besides readings (\(used) bytes in use, nothing waiting for an aggregator): reading on, a group at a time; raise buffer.max_bytes", metadata: [
                            "gateway": "\(gatewayID)", "quarantined": "\(pending.quarantinedTotal)", "set_aside_batches": "\(pending.setAsideBatches)",
                        ])
                    }
                    return
                }
                if settings.fullPolicy == .dropOldest {
                    let dropped = try buffer.dropOldest()
                    if dropped.total > 0 {
                        logger.warning("buffer quota reached; dropped the oldest unsent readings", metadata: [
                            "gateway": "\(gatewayID)", "dropped": "\(dropped.total)", "quota_bytes": "\(quota)",
                            "batch": "\(dropped.sealedBatch.map(String.init) ?? "-")", "dropped_total": "\(buffer.snapshot.droppedTotal)",
                        ])
                        continue
                    }
                    // Nothing droppable is left (only batches being sent, or sent once and
                    // unanswered): wait for their acknowledgements.
                }
                if !blocked {
                    blocked = true
                    stats.bufferFull = true
                    let message = "buffer quota of \(quota) bytes reached (\(used) in use): not reading from the broker until batches are acknowledged"
                    logger.warning("\(message)", metadata: ["gateway": "\(gatewayID)", "policy": "\(settings.fullPolicy.rawValue)"])
                    stats.recordError(message)
                }
            } catch {
                logger.error("cannot check the buffer quota; retrying", metadata: ["gateway": "\(gatewayID)", "error": "\(error)"])
            }
            if isShuttingDown() {
                logger.warning("shutting down while the buffer is full: committing the last group over the quota")
                return
            }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 0.5)
        }
    }

    /// Runs `write` (one group's commit of `readings` readings), retrying while the disk
    /// refuses. While shutting down it gives up once `shutdownCommitMs` have passed since the
    /// stop first met a refusing disk, and says exactly what was lost.
    mutating func commit(readings: Int, isShuttingDown: () -> Bool, _ write: () throws(SQLiteError) -> Void) {
        var delay = 0.1
        var stalled = false
        var committed = false
        defer {
            if stalled && committed {
                stats.bufferFull = false
                logger.notice("buffer writable again; reading from the broker", metadata: ["gateway": "\(gatewayID)"])
            }
        }
        while true {
            do {
                try write()
                committed = true
                retakeReserveNowAndThen(force: stalled)
                return
            } catch {
                stalled = true
                stats.bufferFull = true
                let what = error.isDiskFull ? "buffer disk is full" : "buffer write failed"
                logger.error("\(what): not reading from the broker (it holds the rest) until \(readings) readings are committed; retrying", metadata: [
                    "gateway": "\(gatewayID)", "error": "\(error)",
                ])
                stats.recordError("\(what): \(error)")
                reserve.releaseIfDiskFull(error, logger: logger, gateway: gatewayID)
                if isShuttingDown() {
                    // What we hold was acknowledged to the broker: the released reserve may
                    // make room, so try a little longer, but never past a service manager's
                    // stop timeout (30 s in our unit); then give up and say exactly what.
                    let now = MonotonicClock.nowMs()
                    let deadline = shutdownDeadlineMs ?? now + Self.shutdownCommitMs
                    shutdownDeadlineMs = deadline
                    if now >= deadline {
                        abandonOnShutdown(readings)
                        return
                    }
                } else if error.isDiskFull {
                    if reserve.bytes > 0 {
                        waitForHeadroom(isShuttingDown: isShuttingDown)
                    } else {
                        waitForFreedSpace(isShuttingDown: isShuttingDown)
                    }
                }
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, isShuttingDown() ? 1 : 5)
            }
        }
    }

    /// While the reserve file is not held (released on a full disk, or no room to take it at
    /// start), ingest keeps half the room it stood for free instead (`DiskReserve.keptFree`):
    /// it commits only while the buffer's headroom (free pages inside its file plus free space
    /// on its disk) exceeds that by a group's worth, and otherwise waits until acknowledgements
    /// free more. So the uploader can always record acknowledgements and the backlog drains.
    /// (Before, ingest resumed as soon as the reserve was released, filled what it freed, and
    /// the agent was wedged for good: every acknowledgement failed, every resend was answered
    /// duplicate, and a restart did not help.) Returns at once while shutting down: what we
    /// hold was acknowledged to the broker, and committing it into the kept room beats losing it.
    mutating func waitForHeadroom(isShuttingDown: () -> Bool) {
        guard reserve.bytes > 0, !reserve.isHeld, !retakeReserveNowAndThen(force: true) else { return }
        let needed = reserve.keptFree + Self.groupRoom
        guard reserve.headroomBytes(buffer: buffer) < needed else { return }
        // Said once a minute at most: under traffic ingest may pause and resume with every
        // acknowledged batch.
        stats.bufferFull = true
        var delay = 0.05
        var headroom: Int64 = 0
        while !isShuttingDown() {
            if retakeReserveNowAndThen(force: true) { break }
            headroom = reserve.headroomBytes(buffer: buffer)
            if headroom >= needed { break }
            // Only when it really waits: a wait that ends at once is not worth a line, nor may
            // it use up the minute's line.
            let now = MonotonicClock.nowMs()
            if delay == 0.05 && now - lastHeadroomWarningMs >= 60_000 {
                lastHeadroomWarningMs = now
                let message = "buffer disk nearly full (\(headroom) bytes of room, \(reserve.keptFree) kept free for acknowledgements): "
                    + "reading from the broker only as acknowledged batches free room"
                logger.warning("\(message)", metadata: ["gateway": "\(gatewayID)", "path": "\(buffer.path)"])
                stats.recordError(message)
            }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 1)
        }
        stats.bufferFull = false
    }

    /// Room one group's commit may take: ingest keeps this much above the reserve.
    static let groupRoom: Int64 = 256 << 10

    /// Without a disk reserve (`disk_reserve_bytes: 0`): after a full disk, waits until
    /// acknowledged batches freed pages inside the buffer file, the disk has room again, or
    /// nothing more can be freed.
    private func waitForFreedSpace(isShuttingDown: () -> Bool) {
        var delay = 0.05
        while !isShuttingDown() {
            let inFile = (try? buffer.freeBytesInFile()) ?? 0
            let onDisk = DiskReserve.availableBytes(near: buffer.path) ?? 0
            let nothingToFree = buffer.snapshot.sealedBatches == 0
            if inFile >= Self.groupRoom || onDisk >= Self.groupRoom || nothingToFree { return }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 1)
        }
    }

    /// Takes the disk reserve again once the disk has room for it: checked after a stall and
    /// otherwise every few seconds (the uploader may have released it). True when it is held.
    @discardableResult
    private mutating func retakeReserveNowAndThen(force: Bool) -> Bool {
        let now = MonotonicClock.nowMs()
        guard reserve.bytes > 0, force || now - lastReserveCheckMs >= 5000 else { return true }
        lastReserveCheckMs = now
        guard !reserve.isHeld else { return true }
        guard let available = DiskReserve.availableBytes(near: buffer.path), available >= 2 * reserve.bytes, reserve.take() else { return false }
        logger.notice("disk reserve restored", metadata: ["gateway": "\(gatewayID)", "reserve_bytes": "\(reserve.bytes)"])
        return true
    }

    /// Shutting down while the buffer cannot be written: what was received from the broker
    /// (already acknowledged to it) is given up, and the exact count said.
    private mutating func abandonOnShutdown(_ count: Int) {
        abandonedOnShutdown += count
        logger.critical("shutting down while the buffer cannot be written: readings received from the broker are lost", metadata: [
            "gateway": "\(gatewayID)", "lost_now": "\(count)", "lost_total": "\(abandonedOnShutdown)",
        ])
    }
}

/// The buffer's settings as last (re)loaded: the committer asks at each group, and while it
/// waits for room.
final class LiveBufferSettings: Sendable {
    private let settings: Mutex<AgentConfig.Buffer>
    init(_ settings: AgentConfig.Buffer) { self.settings = Mutex(settings) }
    var value: AgentConfig.Buffer {
        get { settings.withLock { $0 } }
        set { settings.withLock { $0 = newValue } }
    }
}
