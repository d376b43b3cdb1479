import ArgumentParser
import Foundation
import Logging
import Synchronization
import TributaryConfig
import TributaryCore
import TributaryMQTT
import TributarySparkplug
import TributaryWire

/// The tributary-sim command line: sensors, fleet, verify and proxy. The executable's main
/// only calls `Sim.main()`.
public struct Sim: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "tributary-sim",
        abstract: "Traffic for Tributary demos and tests, and the conservation check.",
        subcommands: [Sensors.self, Fleet.self, Verify.self, Proxy.self])
}

struct Sensors: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a gateway's simulated sensors to a broker (QoS 1) and write a manifest of what the broker acknowledged.",
        discussion: """
            Device kinds (--format; a comma list mixes them, sensors take them in turn):
              plug         JSON, ts in epoch ms, a nested ENERGY object
              environment  JSON, ts as an ISO 8601 string, a text state
              meter        JSON, ts in epoch microseconds, an array of voltages
              number       a plain number on <prefix>/<gateway>/<sensor>/<metric>, no time
              sparkplug    Sparkplug B: NBIRTH/DBIRTH, then DDATA by alias, on
                           spBv1.0/<prefix>/DDATA/<gateway>/<sensor>
            The JSON kinds publish on <prefix>/<gateway>/<sensor>. json = plug,environment,meter; mixed = all five. --print-subscriptions shows the agent configuration that reads them all.

            Signals: daily sines with noise, random walks, counters, steps and spikes, switches and state changes. --seed with --start-ms and --count repeats a run, and its manifest, exactly, unless an agent asks a Sparkplug edge node for a rebirth (when that happens depends on the network).

            Faults are recorded in the manifest, so `verify` knows what must arrive once, what the agent must quarantine (verify --agent-buffer), and that silent sensors send nothing more.
            """)

    @Option(help: "Broker, mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS).") var broker = "mqtt://127.0.0.1:1883"
    @Option(help: "MQTT username.") var username: String?
    @Option(help: "File holding the MQTT password (its trailing newline dropped).") var passwordFile: String?
    @Option(help: "mqtts: PEM file of the CA that signed the broker's certificate (default: the system's CAs).") var caFile: String?
    @Option(help: "mqtts: client certificate (PEM), with --key-file.") var certFile: String?
    @Option(help: "mqtts: the client certificate's unencrypted key (PEM).") var keyFile: String?
    @Option(help: "Gateway id put in the topics (the Sparkplug edge node id).") var gateway: String?
    @Option(help: "Number of sensors.") var sensors = 10
    @Option(help: "Messages per second, all sensors together.") var rate = 100.0
    @Option(help: "Messages per second per sensor (instead of --rate).") var sensorRate: Double?
    @Option(help: "Each interval varies by up to this share either way, 0-1.") var jitter = 0.0
    @Option(help: ArgumentHelp("Bursts: FACTORxLENGTH/EVERY, e.g. 5x2s/30s (five times faster for 2 s every 30 s).", valueName: "burst"))
    var burst: String?
    @Option(help: "Device kinds: json, mixed, or a comma list of plug, environment, meter, number, sparkplug.") var format = "json"
    @Option(help: "Stop after this many messages.") var count: Int?
    @Option(help: "Stop after this long, e.g. 30 or 2m (seconds when no unit).") var duration: String?
    @Option(help: "Topic prefix (and Sparkplug group id).") var topicPrefix = "sensors"
    @Option(help: "Seed for the signals, schedules and faults.") var seed: UInt64 = 1
    @Option(help: "The run's clock at the start, ms since the epoch (default: now).") var startMs: Int64?
    @Option(help: "Share of messages sent malformed, 0-1 (the agent must quarantine them).") var malformed = 0.0
    @Option(help: "Share of messages published twice, 0-1 (stored once).") var duplicates = 0.0
    @Option(help: "Share of messages sent after the next one, 0-1.") var outOfOrder = 0.0
    @Option(help: "Each device's clock is off by up to this much either way, e.g. 30s.") var clockSkew: String?
    @Option(help: "Share of sensors that fall silent after a few messages, 0-1.") var silent = 0.0
    @Option(help: "Sparkplug: the primary host application's id. The edge node waits for the host's STATE online (spBv1.0/STATE/ID) before its births; when the host goes offline it sends its deaths and waits again, then births anew.")
    var sparkplugPrimaryHost: String?
    @Option(help: "Where to write the manifest (JSON lines).") var manifest: String?
    @Flag(help: "Print the agent subscriptions that read what this simulator sends, and exit.") var printSubscriptions = false

    func validate() throws {
        if printSubscriptions { return }
        guard gateway != nil, manifest != nil else { throw ValidationError("give --gateway and --manifest") }
        guard count != nil || duration != nil else { throw ValidationError("give --count or --duration") }
        guard sensors > 0, rate > 0, rate.isFinite, sensorRate.map({ $0 > 0 && $0.isFinite }) ?? true else {
            throw ValidationError("--sensors, --rate and --sensor-rate must be positive")
        }
        for (name, share) in [("--jitter", jitter), ("--malformed", malformed), ("--duplicates", duplicates), ("--out-of-order", outOfOrder), ("--silent", silent)] {
            guard (0...1).contains(share) else { throw ValidationError("\(name) takes a share between 0 and 1, not \(share)") }
        }
        if let host = sparkplugPrimaryHost {
            if let problem = SparkplugHostState.problem(hostID: host) { throw ValidationError("--sparkplug-primary-host: \(problem)") }
            guard try kinds().contains(.sparkplug) else {
                throw ValidationError("--sparkplug-primary-host is for a Sparkplug edge node: add sparkplug to --format")
            }
        }
        _ = try kinds()
        _ = try parsedBurst()
        _ = try Self.duration(clockSkew, "--clock-skew")
        _ = try Self.duration(duration, "--duration")
    }

    func kinds() throws -> [DeviceKind] {
        switch format {
        case "json": return DeviceKind.json
        case "mixed": return DeviceKind.allCases
        default:
            return try format.split(separator: ",").map { name in
                guard let kind = DeviceKind(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--format: unknown kind '\(name)' (json, mixed, or \(DeviceKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return kind
            }
        }
    }

    func parsedBurst() throws -> SensorSimulator.Burst? {
        guard let burst else { return nil }
        let parts = burst.split(whereSeparator: { $0 == "x" || $0 == "/" }).map(String.init)
        guard parts.count == 3, let factor = Double(parts[0]), factor >= 1,
              let length = Units.milliseconds(parts[1]), let every = Units.milliseconds(parts[2]), length > 0, every > length
        else { throw ValidationError("--burst: expected FACTORxLENGTH/EVERY such as 5x2s/30s (factor >= 1, every > length), not '\(burst)'") }
        return SensorSimulator.Burst(factor: factor, lengthMs: length, everyMs: every)
    }

    /// A duration flag: "30" is seconds, "2m", "500ms", "4m10s" as the unit says.
    static func duration(_ text: String?, _ flag: String) throws -> Int64? {
        guard let text else { return nil }
        let ms: Int64
        if let seconds = Double(text), seconds >= 0, seconds < 1e9 {
            ms = Int64(seconds * 1000)
        } else if let parsed = Units.milliseconds(text) {
            ms = parsed
        } else {
            throw ValidationError("\(flag): '\(text)' is not a duration such as 30s or 2m")
        }
        // A year: more than any run or any clock skew worth simulating.
        guard ms <= 365 * 86_400_000 else { throw ValidationError("\(flag): '\(text)' is longer than a year") }
        return ms
    }

    func run() async throws {
        if printSubscriptions {
            print("  subscriptions:\n" + SensorSimulator.subscriptionYAML(prefix: topicPrefix))
            return
        }
        let logger = simulatorLogger(level: .warning)
        guard let gateway, let manifest else { return }
        do {
            var options = SensorSimulator.Options(
                broker: try MQTTBroker(url: broker), gatewayID: gateway, sensors: sensors, rate: rate,
                count: count, duration: try Self.duration(duration, "--duration").map { .milliseconds($0) })
            options.sensorRate = sensorRate
            options.jitter = jitter
            options.burst = try parsedBurst()
            options.kinds = try kinds()
            options.topicPrefix = topicPrefix
            options.seed = seed
            options.startMs = startMs
            options.primaryHostID = sparkplugPrimaryHost
            options.faults.malformedShare = malformed
            options.faults.duplicateShare = duplicates
            options.faults.outOfOrderShare = outOfOrder
            options.faults.clockSkewMs = try Self.duration(clockSkew, "--clock-skew") ?? 0
            options.faults.silentShare = silent
            options.username = username
            if let passwordFile {
                do {
                    options.password = try SecretFile.read(passwordFile, as: .line)
                } catch {
                    throw ValidationError("--password-file: \(error.description)")
                }
            }
            if caFile != nil || certFile != nil || keyFile != nil {
                options.tls = MQTTClient.TLS(caFile: caFile, certificateFile: certFile, keyFile: keyFile)
            }
            let line = ProgressLine()
            let primaryHost = sparkplugPrimaryHost
            let result = try await SensorSimulator(options: options, logger: logger).run { p in
                if p.waitingForPrimaryHost, let host = primaryHost {
                    line.show("waiting for the primary host \(host) to say online (\(SparkplugHostState.topic(hostID: host))); \(p.messages) messages sent so far",
                              elapsedSeconds: p.elapsedSeconds)
                    return
                }
                line.show(String(format: "sent %d messages, %d readings in %.0fs (%.0f msg/s)", p.messages, p.readings, p.elapsedSeconds, p.rate),
                          elapsedSeconds: p.elapsedSeconds)
            }
            line.finish()
            try result.write(to: manifest)
            print("""
                published \(result.messagesPublished) messages with \(result.entries.count) readings, all acknowledged by the broker; \
                faults: \(result.quarantined.values.reduce(0, +)) malformed, \(result.duplicatesPublished) duplicated, \
                \(result.outOfOrder) out of order, \(result.silentSensors.count) sensors silent; manifest: \(manifest)
                """)
        } catch {
            throw Failure("tributary-sim sensors: \(error)")
        }
    }
}

struct Fleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Virtual gateways posting batches straight to an aggregator (no broker), with a report and a manifest.",
        discussion: """
            Each gateway has its own id (<prefix>-0001, ...), epoch, sequence, status and rate (half to one and a half times --rate), and sends through the agent's own client: 429 and 5xx answers wait and retry with the agent's backoff (exponential from 200 ms to 30 s, full jitter, Retry-After a floor). Batches are sealed on schedule into a backlog while a send waits, and sent oldest first, so an aggregator that cannot keep up shows as lag; a gateway with nothing to send for --heartbeat-seconds sends a heartbeat. --burst 3:60 makes every gateway produce at 3x its rate for the first 60 s. --lost-acks makes gateways throw answers away and resend (the aggregator must say duplicate); --restarts makes gateways restart once, half keeping their buffer (their last batch is resent), half wiping it (a new epoch).

            The report gives readings/s, ack latency percentiles (HdrHistogram, from the request that got the acknowledgement to its answer), 429/5xx counts, heartbeats, offered (sealed) against served (acknowledged within the schedule) readings/s, each gateway's worst lag from seal to acknowledgement (max, and p99 across gateways), after a burst the time until every gateway caught up, the simulator's peak RSS, and batches still undelivered 30 s after the end (exit 1). The manifest, written as batches are acknowledged, holds every acknowledged reading: `tributary-sim verify --manifest M --sink S` checks the sink against it.
            """)

    @Option(help: "The aggregator, http://HOST:PORT.") var aggregator = "http://127.0.0.1:8470"
    @Option(help: "Number of virtual gateways.") var gateways = 100
    @Option(help: "Gateway id prefix.") var prefix = "fleet"
    @Option(help: "Sensors per gateway.") var sensors = 5
    @Option(help: "Readings per batch.") var batchSize = 100
    @Option(help: "Readings per second per gateway, on average.") var rate = 100.0
    @Option(help: "Run this long, e.g. 30s or 2m...") var duration: String?
    @Option(help: "...or until each gateway has sealed this many batches.") var batches: Int?
    @Option(help: "FACTOR:SECONDS: the first SECONDS of the run, every gateway produces FACTOR times its rate (e.g. 3:60).") var burst: String?
    @Option(help: "A gateway with nothing to send for this long sends a heartbeat (the agent's default: 30).") var heartbeatSeconds = 30.0
    @Option(help: "Retry backoff after 429/5xx: the first ceiling, ms (the agent's retry_initial_ms default).") var retryInitialMs = 200
    @Option(help: "Retry backoff: the largest ceiling, ms (the agent's retry_max_ms default).") var retryMaxMs = 30_000
    @Option(help: "Share of acknowledgements thrown away (the batch is resent), 0-1.") var lostAcks = 0.0
    @Option(help: "Share of gateways that restart once, 0-1.") var restarts = 0.0
    @Option(help: "Request body encoding: zstd, gzip or identity.") var compression = "zstd"
    @Option(help: "HTTP connections to the aggregator, all gateways together.") var connections = 256
    @Option(help: "Seed for rates, values and faults.") var seed: UInt64 = 1
    @Option(help: "Where to write the manifest (JSON lines).") var manifest: String
    @Option(help: "Gateway tokens, GATEWAY_ID TOKEN lines (the aggregator's gateway_auth.token_file format); every gateway needs one.")
    var tokenFile: String?
    @Option(help: "PEM file of the CA that signed an https:// aggregator's certificate (default: the system's CAs).")
    var caFile: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard duration != nil || batches != nil else { throw ValidationError("give --duration or --batches") }
        guard gateways > 0, sensors > 0, batchSize > 0, rate > 0, rate.isFinite, connections > 0 else {
            throw ValidationError("--gateways, --sensors, --batch-size, --rate and --connections must be positive")
        }
        guard (0...1).contains(lostAcks), (0...1).contains(restarts) else { throw ValidationError("--lost-acks and --restarts take a share between 0 and 1") }
        guard ContentEncoding(rawValue: compression) != nil else { throw ValidationError("--compression: zstd, gzip or identity") }
        guard burst.map({ FleetSimulator.Burst($0) != nil }) ?? true else { throw ValidationError("--burst: FACTOR:SECONDS, both positive, e.g. 3:60") }
        guard heartbeatSeconds > 0, heartbeatSeconds.isFinite else { throw ValidationError("--heartbeat-seconds must be positive") }
        guard retryInitialMs > 0, retryMaxMs >= retryInitialMs else { throw ValidationError("--retry-initial-ms must be positive and at most --retry-max-ms") }
        _ = try Sensors.duration(duration, "--duration")
    }

    func run() async throws {
        let logger = simulatorLogger(level: .warning)
        var options = FleetSimulator.Options(aggregator: aggregator, gateways: gateways)
        options.gatewayPrefix = prefix
        options.sensorsPerGateway = sensors
        options.readingsPerBatch = batchSize
        options.rate = rate
        options.duration = try Sensors.duration(duration, "--duration").map { .milliseconds($0) }
        options.batchesPerGateway = batches
        options.burst = burst.flatMap(FleetSimulator.Burst.init)
        options.heartbeatSeconds = heartbeatSeconds
        options.retryInitialMs = retryInitialMs
        options.retryMaxMs = retryMaxMs
        options.lostAckShare = lostAcks
        options.restartShare = restarts
        options.compression = ContentEncoding(rawValue: compression) ?? .zstd
        options.connections = connections
        options.seed = seed
        if let tokenFile { options.tokens = try Self.tokens(from: tokenFile, for: options) }
        options.caFile = caFile
        let line = ProgressLine()
        let report: FleetSimulator.Report
        do {
            report = try await FleetSimulator(options: options, logger: logger).run(manifestPath: manifest) { readings, elapsed in
                line.show(String(format: "%d readings acknowledged in %.0fs (%.0f/s)", readings, elapsed, Double(readings) / max(elapsed, 0.001)),
                          elapsedSeconds: elapsed)
            }
        } catch let error as ManifestError {
            throw Failure("tributary-sim fleet: cannot write the manifest: \(error)")
        }
        line.finish()
        print(json ? report.json : report.description)
        if !json { print("manifest: \(manifest)") }
        if report.rejected > 0 || report.undelivered > 0 { throw ExitCode(1) }
    }

    /// The token of every virtual gateway, from a token file; a gateway without one is an error
    /// (it would only collect 401s).
    static func tokens(from path: String, for options: FleetSimulator.Options) throws -> [String: String] {
        let text: String
        do {
            text = try SecretFile.read(path, as: .lines)
        } catch {
            throw Failure("--token-file: \(error.description)")
        }
        let entries: [GatewayTokenFile.Entry]
        do {
            entries = try GatewayTokenFile.parse(text)
        } catch {
            throw Failure("--token-file \(path) \(error)")
        }
        let tokens = Dictionary(entries.map { ($0.gateway, String(decoding: $0.token, as: UTF8.self)) }, uniquingKeysWith: { first, _ in first })
        let missing = (0..<options.gateways).map { FleetSimulator.gatewayID(index: $0, prefix: options.gatewayPrefix) }.filter { tokens[$0] == nil }
        if let first = missing.first {
            throw Failure("--token-file \(path) has no token for \(first)\(missing.count > 1 ? " and \(missing.count - 1) more gateways" : "")")
        }
        return tokens
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that a sink holds exactly the readings of a manifest: exit 0 only with 0 missing and 0 duplicates.")

    @Option(help: "Manifest written by `tributary-sim sensors`.") var manifest: String
    @Option(help: ArgumentHelp(
        "Sink: sqlite:PATH, or clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE] (read with FINAL).",
        valueName: "url"))
    var sink: String
    @Option(help: "PEM file of the CA that signed a clickhouse+https sink's certificate (default: the system's roots).")
    var caFile: String?
    @Option(help: "An agent's buffer file (repeatable): its quarantine must hold exactly the manifest's malformed messages.")
    var agentBuffer: [String] = []

    func run() async throws {
        let report: Verifier.Report
        do {
            report = try await Verifier.verify(try Manifest.read(from: manifest), sink: sink, caFile: caFile, agentBuffers: agentBuffer)
        } catch {
            throw Failure("tributary-sim verify: \(error)")
        }
        print(report)
        if !report.passed { throw ExitCode(1) }
    }
}

struct Proxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A TCP proxy that injects latency, bandwidth limits, partitions, cut connections and lost replies.",
        discussion: """
            Put it on a link (agent -> aggregator, or agent -> broker) and point the client at --listen.
            Flags set the faults at the start; a script changes them over time, one step per line:

              # at   action          argument
              0s     latency         50ms
              5s     partition                   # black hole until heal
              8s     heal
              10s    drop-responses  0.5         # cut this share of replies as they start (lost acks)
              12s    disconnect                  # cut every open connection now
              15s    bandwidth       64k         # bytes/s per connection and direction; 0 lifts it
              20s    refuse                      # reset new connections until accept
              22s    accept
              25s    normal                      # every fault off
              30s    end                         # exit

            Without an end step the proxy runs until interrupted. Each step and a final count of
            what it did go to stderr.
            """)

    @Option(help: "Where to listen, HOST:PORT (port 0 picks a free one and prints it).") var listen: String
    @Option(help: "Where to forward, HOST:PORT.") var target: String
    @Option(help: "Added delay per forwarded chunk and direction, e.g. 50ms.") var latency: String?
    @Option(help: "Bytes per second per connection and direction, e.g. 64k.") var bandwidth: String?
    @Option(help: "Share (0-1) of replies cut as they start: lost acknowledgements.") var dropResponses: Double?
    @Option(help: "A schedule of fault changes (see above).") var script: String?
    @Option(help: "Seed for the drop decisions.") var seed: UInt64 = 1

    func run() async throws {
        let logger = simulatorLogger(level: .notice)
        do {
            var faults = ProxyFaults()
            // Flags are parsed and applied as the script's own steps at time 0.
            if let latency {
                faults = faults.applying(try FaultSchedule.action("latency", argument: latency, at: "--latency"))
            }
            if let bandwidth {
                faults = faults.applying(try FaultSchedule.action("bandwidth", argument: bandwidth, at: "--bandwidth"))
            }
            if let dropResponses {
                guard (0...1).contains(dropResponses) else { throw ValidationError("--drop-responses takes a share between 0 and 1") }
                faults.dropResponses = dropResponses
            }
            var schedule = FaultSchedule()
            if let script {
                let text: String
                do {
                    text = try String(contentsOfFile: script, encoding: .utf8)
                } catch {
                    throw Failure("tributary-sim proxy: cannot read --script \(script): \(error.localizedDescription)")
                }
                schedule = try FaultSchedule.parse(text, source: script)
            }
            let proxy = try FaultProxy(listen: try .init(listen), target: try .init(target), faults: faults, seed: seed, logger: logger)
            logger.notice("fault proxy listening", metadata: ["listen": "\(listen)", "port": "\(proxy.listenPort)", "target": "\(target)"])
            await withTaskCancellationOnSignals { [schedule] in
                await proxy.run(schedule: schedule)
            }
            logger.notice("fault proxy stopped", metadata: ["counters": "\(proxy.counters)"])
        } catch let error as FaultScheduleError {
            throw Failure("tributary-sim proxy: \(error)")
        } catch let error as ProxyError {
            throw Failure("tributary-sim proxy: \(error)")
        }
    }
}

/// Log lines to stderr, each command at its own level.
func simulatorLogger(level: Logger.Level) -> Logger {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: "tributary-sim")
    logger.logLevel = level
    return logger
}

/// A progress line on stderr: rewritten in place on a terminal; into a file or a pipe, one
/// line every ten seconds, so logs stay readable.
final class ProgressLine: Sendable {
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let lastLogged = Mutex(-10.0)
    private let shown = Mutex(false)

    func show(_ text: String, elapsedSeconds: Double) {
        if isTerminal {
            shown.withLock { $0 = true }
            FileHandle.standardError.write(Data("\r\(text)\u{1B}[K".utf8))
        } else if lastLogged.withLock({ last in
            guard elapsedSeconds - last >= 10 else { return false }
            last = elapsedSeconds
            return true
        }) {
            FileHandle.standardError.write(Data("\(text)\n".utf8))
        }
    }

    /// Ends the line in place, so what follows starts on its own line.
    func finish() {
        if shown.withLock({ $0 }) { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Runs `body`, cancelling it on SIGINT or SIGTERM so it can finish cleanly.
func withTaskCancellationOnSignals(_ body: @escaping @Sendable () async -> Void) async {
    let task = Task { await body() }
    let sources = [SIGINT, SIGTERM].map { signalNumber in
        signal(signalNumber, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signalNumber)
        source.setEventHandler { task.cancel() }
        source.resume()
        return source
    }
    await task.value
    sources.forEach { $0.cancel() }
}

/// Ends the command with one clear line on stderr and exit code 1 (no usage text).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
