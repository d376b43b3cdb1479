import AsyncHTTPClient
import Foundation
import Histogram
import Logging
import NIOCore
import Synchronization
import TributaryRuntime
import TributarySync
import TributaryCore
import TributaryCrypto
import TributaryWire

/// Thousands of virtual gateways posting batches straight to an aggregator, no broker: each
/// with its own id, epoch, sequence, status and rate, speaking through the agent's own
/// `SyncClient` and backing off as the agent does. Each seals batches on its schedule into a
/// backlog, whatever the aggregator answers, and sends the oldest first, so an aggregator that
/// cannot keep up shows as lag; idle ones send heartbeats. On request some lose
/// acknowledgements (and resend, which must come back as duplicates), some restart (keeping
/// their buffer, so resending their last batch, or wiping it, so starting a new epoch), and
/// all produce faster for a while (a burst). Acknowledged readings go to the manifest file as
/// they are acknowledged.
public struct FleetSimulator: Sendable {
    /// The id of the gateway numbered `index` (from 0): `fleet-0001` and on.
    public static func gatewayID(index: Int, prefix: String) -> String {
        String(format: "%@-%04d", prefix, index + 1)
    }

    /// The first `seconds` of a run, every gateway produces `factor` times its rate.
    public struct Burst: Sendable, Equatable {
        public var factor: Double
        public var seconds: Double

        public init(factor: Double, seconds: Double) {
            self.factor = factor
            self.seconds = seconds
        }

        /// `FACTOR:SECONDS`, e.g. `3:60`; nil unless both are positive numbers.
        public init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let factor = Double(parts[0]), let seconds = Double(parts[1]),
                  factor > 0, factor.isFinite, seconds > 0, seconds.isFinite else { return nil }
            self.init(factor: factor, seconds: seconds)
        }
    }

    public struct Options: Sendable {
        /// The aggregator, http://HOST:PORT.
        public var aggregator: String
        public var gateways: Int
        /// Gateway ids are `<prefix>-0001`, ...
        public var gatewayPrefix = "fleet"
        public var sensorsPerGateway = 5
        public var readingsPerBatch = 100
        /// Readings per second per gateway, on average; each gateway's rate is drawn within
        /// half to one and a half times this.
        public var rate = 100.0
        /// Run this long...
        public var duration: Duration?
        /// ...or until every gateway has sealed this many batches.
        public var batchesPerGateway: Int?
        public var burst: Burst?
        /// A gateway that sent nothing for this long sends a heartbeat (the agent's default).
        public var heartbeatSeconds = 30.0
        /// Retry backoff after 429 and 5xx, as the agent's (`retry_initial_ms`, `retry_max_ms` defaults).
        public var retryInitialMs = 200
        public var retryMaxMs = 30_000
        /// Share of acknowledgements each gateway "loses": it resends the batch, which must
        /// come back as a duplicate.
        public var lostAckShare = 0.0
        /// Share of gateways that restart once during the run.
        public var restartShare = 0.0
        public var compression: ContentEncoding = .zstd
        /// HTTP connections to the aggregator, all gateways together.
        public var connections = 256
        public var timeout: Duration = .seconds(30)
        public var seed: UInt64 = 1
        /// Each gateway's token, for an aggregator with gateway_auth (by gateway id).
        public var tokens: [String: String] = [:]
        /// PEM: the CA that signed an https:// aggregator's certificate. Nil: the system's CAs.
        public var caFile: String?

        public init(aggregator: String, gateways: Int) {
            self.aggregator = aggregator
            self.gateways = gateways
        }
    }

    public struct Report: Sendable, CustomStringConvertible {
        public var gateways = 0
        /// Gateways that had every batch they sealed acknowledged.
        public var gatewaysServed = 0
        public var batches = 0
        /// Readings acknowledged (all of them: those in the manifest).
        public var readings = 0
        public var elapsedSeconds = 0.0
        /// The schedule's length: the duration, or the whole run when it is counted in batches.
        public var scheduleSeconds = 0.0
        /// Readings the gateways' schedules sealed, and those acknowledged before the schedule ended.
        public var offeredReadings = 0
        public var servedReadings = 0
        /// Heartbeats acknowledged (sent by gateways with nothing to send).
        public var heartbeats = 0
        /// Acknowledgements thrown away on purpose, and the duplicates that answered the resends.
        public var lostAcks = 0
        public var duplicates = 0
        public var restarts = 0
        public var newEpochs = 0
        /// 429 (backpressure) and 503/5xx (sink down) answers, each retried.
        public var busy = 0
        public var unavailable = 0
        public var unreachable = 0
        /// Refused for good: their readings are not in the manifest.
        public var rejected = 0
        /// Still unacknowledged when the run ended (30 s after its end, or interrupted): not in
        /// the manifest, though the sink may hold them if only the answer was lost.
        public var undelivered = 0
        /// Each gateway's worst lag: seconds from a batch's seal (its due time) to its
        /// acknowledgement, or to the end for one never acknowledged.
        public var gatewayWorstLags: [Double] = []
        /// The last moment (seconds into the run) any gateway was behind: a sealed batch older
        /// than two of its gateway's intervals still waiting.
        public var lastBehindSeconds = 0.0
        public var burst: Burst?
        /// The simulator's own peak resident memory (VmHWM), kB.
        public var peakResidentKB = 0
        /// Request to acknowledgement (accepted or duplicate), in microseconds. Answers that
        /// said "retry" are counted above, not timed here.
        /// Nil in each gateway's part of the report (one histogram is 150 KB); set for the whole run.
        public var latency: Histogram<UInt64>?

        public var readingsPerSecond: Double { Double(readings) / max(elapsedSeconds, 0.001) }
        public var offeredPerSecond: Double { Double(offeredReadings) / max(scheduleSeconds, 0.001) }
        public var servedPerSecond: Double { Double(servedReadings) / max(scheduleSeconds, 0.001) }
        public var maxLagSeconds: Double { gatewayWorstLags.max() ?? 0 }
        /// The 99th percentile, across gateways, of each gateway's worst lag.
        public var p99LagSeconds: Double {
            guard !gatewayWorstLags.isEmpty else { return 0 }
            let sorted = gatewayWorstLags.sorted()
            return sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
        }
        public var gatewaysBehind30s: Int { gatewayWorstLags.count(where: { $0 > 30 }) }
        /// After the burst, the seconds until no gateway was behind; nil when some gateway was
        /// still behind when the schedule ended (or there was no burst).
        public var catchUpSeconds: Double? {
            guard let burst, lastBehindSeconds < scheduleSeconds else { return nil }
            return max(0, lastBehindSeconds - burst.seconds)
        }

        func milliseconds(_ percentile: Double) -> Double { Double(latency?.valueAtPercentile(percentile) ?? 0) / 1000 }
        var maxMilliseconds: Double { Double(latency?.max ?? 0) / 1000 }
        var requestsTimed: UInt64 { latency?.totalCount ?? 0 }

        public var description: String {
            var text = String(format: """
                %d gateways (%d served), %d batches, %d readings in %.1f s: %.0f readings/s
                ack latency ms: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (%d acknowledgements timed)
                answers: %d busy (429), %d unavailable (5xx), %d unreachable, %d rejected, %d undelivered at the end; \
                %d acks lost on purpose -> %d duplicates; %d restarts (%d new epochs); %d heartbeats
                offered %.0f readings/s, served %.0f readings/s (%.3f) over the %.1f s schedule
                lag (seal to ack) s: max %.1f, p99 across gateways %.1f; %d gateways ever behind more than 30 s
                """, gateways, gatewaysServed, batches, readings, elapsedSeconds, readingsPerSecond,
                milliseconds(50), milliseconds(90), milliseconds(99), milliseconds(99.9),
                maxMilliseconds, Int(requestsTimed),
                busy, unavailable, unreachable, rejected, undelivered, lostAcks, duplicates, restarts, newEpochs, heartbeats,
                offeredPerSecond, servedPerSecond, servedPerSecond / max(offeredPerSecond, 0.001), scheduleSeconds,
                maxLagSeconds, p99LagSeconds, gatewaysBehind30s)
            if let burst {
                text += String(format: "\nburst %gx for %g s: ", burst.factor, burst.seconds)
                    + (catchUpSeconds.map { String(format: "every gateway caught up %.1f s after it", $0) } ?? "not caught up by the end of the schedule")
            }
            text += String(format: "\nsimulator peak RSS %.1f MB", Double(peakResidentKB) / 1024)
            return text
        }

        /// The report as one JSON object, latencies in ms (for scripts and `make bench`).
        public var json: String {
            var fields: [(String, String)] = [
                ("gateways", "\(gateways)"), ("gateways_served", "\(gatewaysServed)"), ("batches", "\(batches)"),
                ("readings", "\(readings)"), ("elapsed_seconds", String(format: "%.3f", elapsedSeconds)),
                ("readings_per_second", String(format: "%.1f", readingsPerSecond)),
                ("ack_ms_p50", String(format: "%.3f", milliseconds(50))), ("ack_ms_p90", String(format: "%.3f", milliseconds(90))),
                ("ack_ms_p99", String(format: "%.3f", milliseconds(99))), ("ack_ms_p999", String(format: "%.3f", milliseconds(99.9))),
                ("ack_ms_max", String(format: "%.3f", maxMilliseconds)), ("acks_timed", "\(requestsTimed)"),
                ("busy_429", "\(busy)"), ("unavailable_5xx", "\(unavailable)"), ("unreachable", "\(unreachable)"),
                ("rejected", "\(rejected)"), ("undelivered", "\(undelivered)"), ("lost_acks", "\(lostAcks)"), ("duplicates", "\(duplicates)"),
                ("restarts", "\(restarts)"), ("new_epochs", "\(newEpochs)"),
                ("heartbeats", "\(heartbeats)"), ("schedule_seconds", String(format: "%.3f", scheduleSeconds)),
                ("offered_readings", "\(offeredReadings)"), ("served_readings", "\(servedReadings)"),
                ("offered_readings_per_second", String(format: "%.1f", offeredPerSecond)),
                ("served_readings_per_second", String(format: "%.1f", servedPerSecond)),
                ("lag_s_max", String(format: "%.3f", maxLagSeconds)), ("lag_s_p99", String(format: "%.3f", p99LagSeconds)),
                ("gateways_behind_30s", "\(gatewaysBehind30s)"), ("simulator_peak_rss_kb", "\(peakResidentKB)"),
            ]
            if let burst {
                fields += [("burst_factor", "\(burst.factor)"), ("burst_seconds", "\(burst.seconds)"),
                           ("catch_up_seconds", catchUpSeconds.map { String(format: "%.3f", $0) } ?? "null")]
            }
            return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }

        mutating func add(_ other: Report) {
            gatewaysServed += other.gatewaysServed
            batches += other.batches
            readings += other.readings
            offeredReadings += other.offeredReadings
            servedReadings += other.servedReadings
            heartbeats += other.heartbeats
            lostAcks += other.lostAcks
            duplicates += other.duplicates
            restarts += other.restarts
            newEpochs += other.newEpochs
            busy += other.busy
            unavailable += other.unavailable
            unreachable += other.unreachable
            rejected += other.rejected
            undelivered += other.undelivered
            gatewayWorstLags += other.gatewayWorstLags
            lastBehindSeconds = max(lastBehindSeconds, other.lastBehindSeconds)
        }
    }

    public let options: Options
    private let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs every gateway until the duration or batch count, writing each acknowledged reading
    /// to the manifest at `manifestPath` as it is acknowledged, and returns the report.
    /// `progress` gets (readings acknowledged, elapsed seconds) about once a second.
    public func run(manifestPath: String, progress: @escaping @Sendable (Int, Double) -> Void = { _, _ in }) async throws -> Report {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60),
                                             concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, options.connections))
        configuration.tlsConfiguration = try options.caFile.map { path throws(TLSFiles.Problem) in try TLSFiles.trusting(path, key: "--ca-file") }
        let manifest = try ManifestWriter(path: manifestPath)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let acknowledged = ReadingCounter()
        // One histogram for all gateways: one each would be 150 KB a gateway.
        let latency = LatencyRecorder()
        let start = ContinuousClock.now
        let wallStartMs = WallClock.nowMs()
        let end = options.duration.map { start + $0 }
        var report = Report()
        report.gateways = options.gateways
        report.burst = options.burst
        report.gatewayWorstLags.reserveCapacity(options.gateways)

        let ticker = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                progress(acknowledged.value, (ContinuousClock.now - start).inSeconds)
            }
        }
        await withTaskGroup(of: Report.self) { group in
            for index in 0..<options.gateways {
                group.addTask { [options] in
                    var gateway = VirtualGateway(index: index, options: options, http: http, latency: latency)
                    return await gateway.run(start: start, wallStartMs: wallStartMs, end: end) { readings in
                        manifest.append(readings)
                        acknowledged.add(readings.count)
                    }
                }
            }
            for await part in group { report.add(part) }
        }
        ticker.cancel()
        report.latency = latency.histogram
        report.elapsedSeconds = (ContinuousClock.now - start).inSeconds
        report.scheduleSeconds = options.duration?.inSeconds ?? report.elapsedSeconds
        try await http.shutdown()
        try manifest.finish(messages: report.batches)
        report.peakResidentKB = peakResidentKB()
        return report
    }
}

/// Acknowledgement latencies of every gateway.
final class LatencyRecorder: Sendable {
    private let recorded = Mutex(Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three))
    func record(_ duration: Duration) {
        let micros = UInt64(max(0, min(duration.inSeconds * 1e6, 120e6)))
        recorded.withLock { _ = $0.record(micros) }
    }
    var histogram: Histogram<UInt64> { recorded.withLock { $0 } }
}

/// Readings acknowledged so far, all gateways together, for the progress line.
final class ReadingCounter: Sendable {
    private let count = Mutex(0)
    func add(_ n: Int) { count.withLock { $0 += n } }
    var value: Int { count.withLock { $0 } }
}

/// One simulated gateway: a backlog of sealed batches, sealed on its schedule and sent one at
/// a time, oldest first, as an agent's buffer is.
struct VirtualGateway {
    /// A sealed batch waiting for its acknowledgement.
    struct Pending {
        /// Only the encoded batch is kept while it waits (its readings, with a topic string each,
        /// took a gigabyte for 10,000 gateways' backlogs under overload); they are decoded again
        /// once, when it is acknowledged.
        var batch: Tributary_V1_Batch
        var readingCount: Int
        /// Receive time of its first reading, for the status's oldest unsent.
        var oldestMs: Int64
        var identity: BatchIdentity
        var readings: [Reading] { (try? BatchCodec.decode(batch)) ?? [] }
        /// Its due time on the schedule: lag counts from here.
        var sealedAt: ContinuousClock.Instant
        /// A resend, after a restart, of a batch already acknowledged: it adds nothing to the manifest.
        var resend = false
        /// Its acknowledgement was thrown away on purpose: the sink has it, whatever comes next.
        var ackLost = false
    }

    let id: String
    let options: FleetSimulator.Options
    let client: SyncClient
    let stats = SyncStats()
    let latency: LatencyRecorder
    var generator: SeededGenerator
    var epoch: String
    var sequence: UInt64 = 1
    /// Digest of the last batch sealed in this epoch, which the next one names (as the agent's
    /// buffer does), so the aggregator checks virtual gateways' chains too.
    var chainHead: [UInt8] = []
    var ingested: UInt64 = 0
    var acknowledged: UInt64 = 0
    var lastTimeMs: Int64 = 0
    var values: [Double]
    /// Seconds between batches at 1x, from this gateway's own rate.
    let intervalSeconds: Double
    /// When (in batches delivered) this gateway restarts, if it does.
    var restartAfterBatches: Int?
    var backlog: [Pending] = []
    var backoff: Backoff
    var report = FleetSimulator.Report()
    var worstLag = 0.0
    /// The last moment this gateway was behind (a waiting batch older than two intervals).
    var lastBehind: ContinuousClock.Instant?

    init(index: Int, options: FleetSimulator.Options, http: HTTPClient, latency: LatencyRecorder) {
        self.latency = latency
        id = FleetSimulator.gatewayID(index: index, prefix: options.gatewayPrefix)
        self.options = options
        var client = SyncClient(http: http, url: options.aggregator, encoding: options.compression,
                                timeout: .nanoseconds(Int64(options.timeout.inSeconds * 1e9)), observer: stats, token: options.tokens[id],
                                gatewayID: id)
        client.troubleSettings = .tool
        self.client = client
        var generator = SeededGenerator(seed: options.seed &* 0x9E37_79B9 &+ UInt64(index))
        epoch = Self.newEpoch(&generator)
        let rate = options.rate * Double.random(in: 0.5...1.5, using: &generator)
        intervalSeconds = Double(options.readingsPerBatch) / max(rate, 0.001)
        values = (0..<max(1, options.sensorsPerGateway)).map { _ in Double.random(in: 10...30, using: &generator) }
        if options.restartShare > 0, Double.random(in: 0..<1, using: &generator) < options.restartShare {
            restartAfterBatches = Int.random(in: 1...max(1, (options.batchesPerGateway ?? 10) - 1), using: &generator)
        }
        self.generator = generator
        backoff = Backoff(initialMs: options.retryInitialMs, maxMs: options.retryMaxMs)
    }

    static func newEpoch(_ generator: inout SeededGenerator) -> String {
        String(format: "sim-%08x%08x", UInt32(truncatingIfNeeded: generator.next()), UInt32(truncatingIfNeeded: generator.next()))
    }

    /// Seconds from a batch due at `due` to the next: shorter during the burst.
    private func interval(after due: ContinuousClock.Instant, start: ContinuousClock.Instant) -> Double {
        guard let burst = options.burst, due < start + .seconds(burst.seconds) else { return intervalSeconds }
        return intervalSeconds / burst.factor
    }

    /// Seals batches as they fall due and sends them, oldest first, until the schedule is over and
    /// the backlog is empty (or 30 s past the end). `onAck` gets each acknowledged batch's readings.
    mutating func run(start: ContinuousClock.Instant, wallStartMs: Int64, end: ContinuousClock.Instant?,
                      acknowledged onAck: ([Reading]) -> Void) async -> FleetSimulator.Report {
        let giveUpAt = end.map { $0 + .seconds(30) }
        let heartbeat = Duration.seconds(options.heartbeatSeconds)
        let behindAfter = Duration.seconds(2 * intervalSeconds)
        // Gateways came up at different moments: spread the first batches over one interval.
        var due = start + .seconds(Double.random(in: 0..<interval(after: start, start: start), using: &generator))
        var sealed = 0
        var delivered = 0
        var failed = false
        /// When the oldest batch may go again, after a refusal.
        var retryAt: ContinuousClock.Instant?
        var lastContact = start
        var heartbeatBackoff = Backoff(initialMs: options.retryInitialMs, maxMs: options.retryMaxMs)
        var nextHeartbeatAt = start
        var scheduleOver: Bool {
            if let limit = options.batchesPerGateway, sealed >= limit { return true }
            if let end, due >= end { return true }
            return false
        }

        while !Task.isCancelled {
            var now = ContinuousClock.now
            // Seal what fell due, even while the oldest batch waits out a retry or its answer: a
            // slow aggregator shows as lag, not as a lower offered rate.
            while !scheduleOver, due <= now {
                seal(dueAt: due, wallMs: wallStartMs + Int64((due - start).inSeconds * 1000))
                sealed += 1
                due = due + .seconds(interval(after: due, start: start))
            }
            if backlog.isEmpty, scheduleOver { break }
            if let giveUpAt, now >= giveUpAt {
                for pending in backlog {
                    if pending.ackLost {
                        // The first answer said the sink has it even if the resend got nowhere.
                        acknowledge(pending, at: now, end: end, onAck: onAck)
                    } else {
                        report.undelivered += 1
                        failed = true
                        noteLag(of: pending, at: now, behindAfter: behindAfter)
                    }
                }
                backlog.removeAll()
                break
            }

            if !backlog.isEmpty, retryAt.map({ now >= $0 }) ?? true {
                var request = Tributary_V1_SyncRequest()
                request.batch = backlog[0].batch
                request.status = status(round: backlog[0], waiting: backlog.dropFirst())
                let outcome = await client.send(request, expecting: backlog[0].identity)
                let answered = ContinuousClock.now
                switch outcome {
                case .acknowledged(let duplicate):
                    latency.record(answered - now)
                    lastContact = answered
                    backoff.reset()
                    retryAt = nil
                    if duplicate { report.duplicates += 1 }
                    if !backlog[0].ackLost, options.lostAckShare > 0, Double.random(in: 0..<1, using: &generator) < options.lostAckShare {
                        // As if the answer never arrived: the same batch goes again.
                        backlog[0].ackLost = true
                        report.lostAcks += 1
                        continue
                    }
                    let pending = backlog.removeFirst()
                    acknowledge(pending, at: answered, end: end, onAck: onAck)
                    if !pending.resend {
                        delivered += 1
                        if restartAfterBatches == delivered { await restart(after: pending) }
                    }
                case .retry(let afterMs, _):
                    // As the agent: exponential with full jitter, the server's Retry-After a floor.
                    retryAt = answered + .milliseconds(backoff.next(floorMs: afterMs, using: &generator))
                case .rejected(let reason), .identityTaken(let reason):
                    // A virtual gateway never rolls its buffer back, so a 409 is as wrong as a 400.
                    let pending = backlog.removeFirst()
                    report.rejected += 1
                    FileHandle.standardError.write(Data("gateway \(id): batch \(pending.identity) rejected: \(reason)\n".utf8))
                    retryAt = nil
                    if pending.ackLost {
                        // Refused on a resend after a "lost" acknowledgement: the first answer stands.
                        acknowledge(pending, at: answered, end: end, onAck: onAck)
                    } else {
                        failed = true
                        delivered += 1
                        if restartAfterBatches == delivered { await restart(after: nil) }
                    }
                }
                continue
            }

            // Nothing to send for a while: a heartbeat, so the fleet view keeps this gateway fresh.
            if backlog.isEmpty, now - lastContact >= heartbeat, now >= nextHeartbeatAt {
                var request = Tributary_V1_SyncRequest()
                request.status = status(round: nil, waiting: [])
                let outcome = await client.send(request, expecting: nil)
                now = ContinuousClock.now
                switch outcome {
                case .acknowledged:
                    report.heartbeats += 1
                    lastContact = now
                    heartbeatBackoff.reset()
                case .retry(let afterMs, _):
                    nextHeartbeatAt = now + .milliseconds(heartbeatBackoff.next(floorMs: afterMs, using: &generator))
                case .rejected, .identityTaken:
                    nextHeartbeatAt = now + heartbeat
                }
                continue
            }

            // Sleep until the next thing to do: a batch due, a retry, a heartbeat, the give-up.
            var wake: ContinuousClock.Instant? = scheduleOver ? giveUpAt : due
            func earliest(_ instant: ContinuousClock.Instant) { wake = wake.map { min($0, instant) } ?? instant }
            if backlog.isEmpty {
                earliest(max(lastContact + heartbeat, nextHeartbeatAt))
            } else if let retryAt {
                earliest(retryAt)
            }
            guard let wake else { break }
            try? await Task.sleep(until: wake, clock: .continuous)
        }
        if !failed { report.gatewaysServed = 1 }
        report.gatewayWorstLags = [worstLag]
        report.lastBehindSeconds = lastBehind.map { ($0 - start).inSeconds } ?? 0
        // The agent's client counted every answer by kind; the report takes the ones it shows.
        let answers = stats.requestCounts
        report.busy = Int(answers[.busy, default: 0])
        report.unavailable = Int(answers[.unavailable, default: 0])
        report.unreachable = Int(answers[.unreachable, default: 0])
        return report
    }

    /// Seals the next batch into the backlog, its readings stamped on the schedule's wall clock.
    private mutating func seal(dueAt due: ContinuousClock.Instant, wallMs: Int64) {
        let readings = makeReadings(atMs: wallMs)
        ingested += UInt64(readings.count)
        report.offeredReadings += readings.count
        backlog.append(seal(readings, at: due))
    }

    private mutating func seal(_ readings: [Reading], at due: ContinuousClock.Instant) -> Pending {
        let identity = BatchIdentity(gatewayID: id, epoch: epoch, sequence: sequence)
        var batch = BatchCodec.encode(identity: identity, readings: readings, sealedAtMs: readings.last?.timeMs ?? 0)
        batch.previousDigest = Data(chainHead)
        chainHead = BatchChain.digest(of: (try? batch.serializedBytes()) ?? [])
        sequence += 1
        return Pending(batch: batch, readingCount: readings.count, oldestMs: readings.first?.receivedAtMs ?? 0, identity: identity, sealedAt: due)
    }

    private mutating func acknowledge(_ pending: Pending, at answered: ContinuousClock.Instant, end: ContinuousClock.Instant?,
                                      onAck: ([Reading]) -> Void) {
        guard !pending.resend else { return }
        acknowledged += UInt64(pending.readingCount)
        report.batches += 1
        report.readings += pending.readingCount
        if end.map({ answered <= $0 }) ?? true { report.servedReadings += pending.readingCount }
        onAck(pending.readings)
        noteLag(of: pending, at: answered, behindAfter: .seconds(2 * intervalSeconds))
    }

    private mutating func noteLag(of pending: Pending, at instant: ContinuousClock.Instant, behindAfter: Duration) {
        let lag = instant - pending.sealedAt
        worstLag = max(worstLag, lag.inSeconds)
        // It waited past two intervals: the gateway was behind from then until now.
        if lag > behindAfter { lastBehind = max(lastBehind ?? instant, instant) }
    }

    /// A restart: after a pause, half keep their buffer (the last batch, whose ack may have
    /// been lost in the crash, is resent first and must be a duplicate); the others lost it and
    /// start a new epoch from sequence 1, resealing the readings still waiting (as if the broker
    /// kept them for its persistent session) so every offered reading still arrives.
    private mutating func restart(after last: Pending?) async {
        report.restarts += 1
        try? await Task.sleep(for: .milliseconds(Int.random(in: 200...1000, using: &generator)))
        if let last, Bool.random(using: &generator) {
            var resend = last
            resend.resend = true
            resend.ackLost = false
            backlog.insert(resend, at: 0)
        } else {
            report.newEpochs += 1
            epoch = Self.newEpoch(&generator)
            sequence = 1
            chainHead = []
            let waiting = backlog
            ingested = waiting.reduce(0) { $0 + UInt64($1.readingCount) }
            acknowledged = 0
            backlog = waiting.map { seal($0.readings, at: $0.sealedAt) }
        }
    }

    /// The next batch's readings at `nowMs` on this gateway's clock: the sensors in turn, each a
    /// random walk, times strictly increasing.
    private mutating func makeReadings(atMs nowMs: Int64) -> [Reading] {
        (0..<options.readingsPerBatch).map { i in
            let sensor = i % values.count
            values[sensor] += Double.random(in: -0.5...0.5, using: &generator)
            lastTimeMs = max(nowMs - Int64(options.readingsPerBatch - i), lastTimeMs + 1)
            return Reading(gatewayID: id, sensorID: String(format: "s-%02d", sensor + 1), metric: "value",
                           topic: "fleet/\(id)/s-\(sensor + 1)", timeMs: lastTimeMs, receivedAtMs: lastTimeMs,
                           value: .double((values[sensor] * 100).rounded() / 100))
        }
    }

    /// This gateway's status with the round `round` in flight and `waiting` behind it.
    private func status(round: Pending?, waiting: ArraySlice<Pending>) -> Tributary_V1_GatewayStatus {
        var status = Tributary_V1_GatewayStatus()
        status.gatewayID = id
        status.agentVersion = "tributary-sim-fleet/0.2"
        status.ingestedTotal = ingested
        status.acknowledgedTotal = acknowledged
        status.backlogReadings = UInt64(waiting.reduce(0) { $0 + $1.readingCount })
        status.oldestUnsentMs = waiting.first?.oldestMs ?? 0
        status.brokerConnected = true
        status.clockMs = WallClock.nowMs()
        status.ingestRate = Double(options.readingsPerBatch) / intervalSeconds
        status.sealedBatches = UInt64(waiting.count + (round == nil ? 0 : 1))
        status.roundReadings = UInt64(round?.readingCount ?? 0)
        status.roundOldestMs = round?.oldestMs ?? 0
        if let exchange = stats.bestRecentExchange { status.lastExchange = Tributary_V1_ClockExchange(exchange) }
        return status
    }
}
