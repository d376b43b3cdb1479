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
/// `SyncClient`. On request some lose acknowledgements (and resend, which must come back as
/// duplicates) and some restart (keeping their buffer, so resending their last batch, or
/// wiping it, so starting a new epoch). The manifest holds every reading acknowledged.
public struct FleetSimulator: Sendable {
    /// The id of the gateway numbered `index` (from 0): `fleet-0001` and on.
    public static func gatewayID(index: Int, prefix: String) -> String {
        String(format: "%@-%04d", prefix, index + 1)
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
        /// ...or until every gateway has sent this many batches.
        public var batchesPerGateway: Int?
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
        public var readings = 0
        public var elapsedSeconds = 0.0
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
        /// Request to acknowledgement (accepted or duplicate), in microseconds. Answers that
        /// said "retry" are counted above, not timed here.
        /// Nil in each gateway's part of the report (one histogram is 150 KB); set for the whole run.
        public var latency: Histogram<UInt64>?

        public var readingsPerSecond: Double { Double(readings) / max(elapsedSeconds, 0.001) }

        func milliseconds(_ percentile: Double) -> Double { Double(latency?.valueAtPercentile(percentile) ?? 0) / 1000 }
        var maxMilliseconds: Double { Double(latency?.max ?? 0) / 1000 }
        var requestsTimed: UInt64 { latency?.totalCount ?? 0 }

        public var description: String {
            String(format: """
                %d gateways (%d served), %d batches, %d readings in %.1f s: %.0f readings/s
                ack latency ms: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (%d acknowledgements timed)
                answers: %d busy (429), %d unavailable (5xx), %d unreachable, %d rejected, %d undelivered at the end; \
                %d acks lost on purpose -> %d duplicates; %d restarts (%d new epochs)
                """, gateways, gatewaysServed, batches, readings, elapsedSeconds, readingsPerSecond,
                milliseconds(50), milliseconds(90), milliseconds(99), milliseconds(99.9),
                maxMilliseconds, Int(requestsTimed),
                busy, unavailable, unreachable, rejected, undelivered, lostAcks, duplicates, restarts, newEpochs)
        }

        /// The report as one JSON object, latencies in ms (for scripts and `make bench`).
        public var json: String {
            let fields: [(String, String)] = [
                ("gateways", "\(gateways)"), ("gateways_served", "\(gatewaysServed)"), ("batches", "\(batches)"),
                ("readings", "\(readings)"), ("elapsed_seconds", String(format: "%.3f", elapsedSeconds)),
                ("readings_per_second", String(format: "%.1f", readingsPerSecond)),
                ("ack_ms_p50", String(format: "%.3f", milliseconds(50))), ("ack_ms_p90", String(format: "%.3f", milliseconds(90))),
                ("ack_ms_p99", String(format: "%.3f", milliseconds(99))), ("ack_ms_p999", String(format: "%.3f", milliseconds(99.9))),
                ("ack_ms_max", String(format: "%.3f", maxMilliseconds)), ("acks_timed", "\(requestsTimed)"),
                ("busy_429", "\(busy)"), ("unavailable_5xx", "\(unavailable)"), ("unreachable", "\(unreachable)"),
                ("rejected", "\(rejected)"), ("undelivered", "\(undelivered)"), ("lost_acks", "\(lostAcks)"), ("duplicates", "\(duplicates)"),
                ("restarts", "\(restarts)"), ("new_epochs", "\(newEpochs)"),
            ]
            return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }

        mutating func add(_ other: Report) {
            gatewaysServed += other.gatewaysServed
            batches += other.batches
            readings += other.readings
            lostAcks += other.lostAcks
            duplicates += other.duplicates
            restarts += other.restarts
            newEpochs += other.newEpochs
            busy += other.busy
            unavailable += other.unavailable
            unreachable += other.unreachable
            rejected += other.rejected
            undelivered += other.undelivered
        }
    }

    public let options: Options
    private let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs every gateway until the duration or batch count, then returns the manifest of
    /// acknowledged readings and the report. `progress` gets (readings acknowledged, elapsed
    /// seconds) about once a second.
    public func run(progress: @escaping @Sendable (Int, Double) -> Void = { _, _ in }) async throws -> (Manifest, Report) {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60),
                                             concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, options.connections))
        configuration.tlsConfiguration = try options.caFile.map { path throws(TLSFiles.Problem) in try TLSFiles.trusting(path, key: "--ca-file") }
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let acknowledged = ReadingCounter()
        // One histogram for all gateways: one each would be 150 KB a gateway.
        let latency = LatencyRecorder()
        let start = ContinuousClock.now
        let end = options.duration.map { start + $0 }
        var manifest = Manifest(messagesPublished: 0, entries: [])
        var report = Report()
        report.gateways = options.gateways

        let ticker = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                progress(acknowledged.value, (ContinuousClock.now - start).inSeconds)
            }
        }
        await withTaskGroup(of: (Manifest, Report).self) { group in
            for index in 0..<options.gateways {
                group.addTask { [options] in
                    var gateway = VirtualGateway(index: index, options: options, http: http, latency: latency)
                    return await gateway.run(start: start, end: end) { acknowledged.add($0) }
                }
            }
            for await (part, partReport) in group {
                manifest.append(part)
                report.add(partReport)
            }
        }
        ticker.cancel()
        report.latency = latency.histogram
        report.elapsedSeconds = (ContinuousClock.now - start).inSeconds
        try await http.shutdown()
        manifest.messagesPublished = report.batches
        return (manifest, report)
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

/// One simulated gateway: a buffer of sealed batches it sends one at a time, in order.
struct VirtualGateway {
    let id: String
    let options: FleetSimulator.Options
    let client: SyncClient
    let stats = SyncStats()
    let latency: LatencyRecorder
    /// Past this, a batch still unacknowledged is given up (the run is over).
    var giveUpAt: ContinuousClock.Instant?
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
    /// Seconds between batches, from this gateway's own rate.
    let intervalSeconds: Double
    /// When (in batches) this gateway restarts, if it does.
    var restartAfterBatches: Int?

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
    }

    static func newEpoch(_ generator: inout SeededGenerator) -> String {
        String(format: "sim-%08x%08x", UInt32(truncatingIfNeeded: generator.next()), UInt32(truncatingIfNeeded: generator.next()))
    }

    mutating func run(start: ContinuousClock.Instant, end: ContinuousClock.Instant?, acknowledged onAck: (Int) -> Void) async -> (Manifest, FleetSimulator.Report) {
        var manifest = Manifest(messagesPublished: 0, entries: [])
        var report = FleetSimulator.Report()
        var failed = false
        giveUpAt = end.map { $0 + .seconds(30) }
        // Gateways came up at different moments: spread the first batches over one interval.
        var due = start + .seconds(Double.random(in: 0..<intervalSeconds, using: &generator))
        var sent = 0
        while !Task.isCancelled {
            if let limit = options.batchesPerGateway, sent >= limit { break }
            if let end, due >= end { break }
            try? await Task.sleep(until: due, clock: .continuous)
            let readings = makeReadings()
            ingested += UInt64(readings.count)
            let identity = BatchIdentity(gatewayID: id, epoch: epoch, sequence: sequence)
            var batch = BatchCodec.encode(identity: identity, readings: readings, sealedAtMs: readings.last?.timeMs ?? 0)
            batch.previousDigest = Data(chainHead)
            chainHead = BatchChain.digest(of: (try? batch.serializedBytes()) ?? [])
            switch await deliver(batch, readings: readings, identity: identity, report: &report) {
            case .acknowledged:
                acknowledged += UInt64(readings.count)
                manifest.entries += readings.map(Manifest.Entry.init)
                report.batches += 1
                report.readings += readings.count
                onAck(readings.count)
            case .rejected, .abandoned:
                failed = true
            }
            if Task.isCancelled { break }
            sequence += 1
            sent += 1
            due = due + .seconds(intervalSeconds)
            if restartAfterBatches == sent {
                await restart(lastBatch: batch, readings: readings, report: &report)
            }
        }
        if !failed { report.gatewaysServed = 1 }
        // The agent's client counted every answer by kind; the report takes the ones it shows.
        let answers = stats.requestCounts
        report.busy = Int(answers[.busy, default: 0])
        report.unavailable = Int(answers[.unavailable, default: 0])
        report.unreachable = Int(answers[.unreachable, default: 0])
        return (manifest, report)
    }

    enum Delivery { case acknowledged, rejected, abandoned }

    /// Sends until the aggregator acknowledges the batch or refuses it for good, as the agent
    /// does: 429 and 5xx wait (with jitter, so gateways do not retry in step) and retry, an
    /// acknowledgement "lost" on purpose means a resend. Gives up when the run is over.
    private mutating func deliver(_ batch: Tributary_V1_Batch, readings: [Reading], identity: BatchIdentity,
                                  report: inout FleetSimulator.Report) async -> Delivery {
        var backoffMs = 100
        var ackLost = false
        while true {
            if Task.isCancelled || giveUpAt.map({ ContinuousClock.now >= $0 }) == true {
                // The first answer said the sink has it even if the resend got nowhere.
                if ackLost { return .acknowledged }
                report.undelivered += 1
                return .abandoned
            }
            var request = Tributary_V1_SyncRequest()
            request.batch = batch
            request.status = status(round: readings)
            let started = ContinuousClock.now
            let outcome = await client.send(request, expecting: identity)
            if case .acknowledged = outcome { latency.record(ContinuousClock.now - started) }
            switch outcome {
            case .acknowledged(let duplicate):
                if duplicate { report.duplicates += 1 }
                if !ackLost, options.lostAckShare > 0, Double.random(in: 0..<1, using: &generator) < options.lostAckShare {
                    // As if the answer never arrived: the same batch goes again.
                    ackLost = true
                    report.lostAcks += 1
                    continue
                }
                return .acknowledged
            case .retry(let afterMs, _):
                let wait = Double(afterMs > 0 ? afterMs : backoffMs) * Double.random(in: 1...1.5, using: &generator)
                backoffMs = min(backoffMs * 2, 5_000)
                try? await Task.sleep(for: .milliseconds(Int64(wait)))
            case .rejected(let reason), .identityTaken(let reason):
                // A virtual gateway never rolls its buffer back, so a 409 is as wrong as a 400.
                report.rejected += 1
                FileHandle.standardError.write(Data("gateway \(id): batch \(identity) rejected: \(reason)\n".utf8))
                // Refused on a resend after a "lost" acknowledgement: the first answer stands.
                return ackLost ? .acknowledged : .rejected
            }
        }
    }

    /// A restart: after a pause, half keep their buffer (the last batch, whose ack may have
    /// been lost in the crash, is resent and must be a duplicate); the others lost it and
    /// start a new epoch from sequence 1.
    private mutating func restart(lastBatch: Tributary_V1_Batch, readings: [Reading], report: inout FleetSimulator.Report) async {
        report.restarts += 1
        try? await Task.sleep(for: .milliseconds(Int.random(in: 200...1000, using: &generator)))
        if Bool.random(using: &generator) {
            let identity = BatchIdentity(gatewayID: id, epoch: epoch, sequence: sequence - 1)
            _ = await deliver(lastBatch, readings: readings, identity: identity, report: &report)
        } else {
            report.newEpochs += 1
            epoch = Self.newEpoch(&generator)
            sequence = 1
            chainHead = []
            ingested = 0
            acknowledged = 0
        }
    }

    /// The next batch's readings: the sensors in turn, each a random walk, times strictly
    /// increasing on this gateway's clock.
    private mutating func makeReadings() -> [Reading] {
        let now = WallClock.nowMs()
        return (0..<options.readingsPerBatch).map { i in
            let sensor = i % values.count
            values[sensor] += Double.random(in: -0.5...0.5, using: &generator)
            lastTimeMs = max(now - Int64(options.readingsPerBatch - i), lastTimeMs + 1)
            return Reading(gatewayID: id, sensorID: String(format: "s-%02d", sensor + 1), metric: "value",
                           topic: "fleet/\(id)/s-\(sensor + 1)", timeMs: lastTimeMs, receivedAtMs: lastTimeMs,
                           value: .double((values[sensor] * 100).rounded() / 100))
        }
    }

    private func status(round: [Reading]) -> Tributary_V1_GatewayStatus {
        var status = Tributary_V1_GatewayStatus()
        status.gatewayID = id
        status.agentVersion = "tributary-sim-fleet/0.1"
        status.ingestedTotal = ingested
        status.acknowledgedTotal = acknowledged
        status.brokerConnected = true
        status.clockMs = WallClock.nowMs()
        status.ingestRate = Double(options.readingsPerBatch) / intervalSeconds
        status.sealedBatches = 1
        status.roundReadings = UInt64(round.count)
        status.roundOldestMs = round.first?.receivedAtMs ?? 0
        if let exchange = stats.bestRecentExchange { status.lastExchange = Tributary_V1_ClockExchange(exchange) }
        return status
    }
}
