import ArgumentParser
import Foundation
import Logging
import TributaryMQTT
import TributarySimulator

@main
struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-sim",
        abstract: "Traffic for Tributary demos and tests, and the conservation check.",
        subcommands: [Sensors.self, Verify.self, Proxy.self])
}

struct Sensors: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish realistic JSON sensor readings to a broker (QoS 1) and write a manifest of them.",
        discussion: "Topics are <prefix>/<gateway>/<sensor>; each message carries five readings and a ts field in ms.")

    @Option(help: "Broker, mqtt://HOST:PORT.") var broker = "mqtt://127.0.0.1:1883"
    @Option(help: "Gateway id put in the topics.") var gateway: String
    @Option(help: "Number of sensors.") var sensors = 10
    @Option(help: "Messages per second, all sensors together.") var rate = 100.0
    @Option(help: "Stop after this many messages.") var count: Int?
    @Option(help: "Stop after this many seconds.") var duration: Double?
    @Option(help: "Topic prefix.") var topicPrefix = "sensors"
    @Option(help: "Seed for the signal models.") var seed: UInt64 = 1
    @Option(help: "Where to write the manifest (JSON lines).") var manifest: String

    func validate() throws {
        guard count != nil || duration != nil else { throw ValidationError("give --count or --duration") }
        guard sensors > 0, rate > 0 else { throw ValidationError("--sensors and --rate must be positive") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "tributary-sim")
        logger.logLevel = .warning
        do {
            var options = SensorSimulator.Options(
                broker: try MQTTBroker(url: broker), gatewayID: gateway, sensors: sensors, rate: rate,
                count: count, duration: duration.map { .milliseconds(Int64($0 * 1000)) })
            options.topicPrefix = topicPrefix
            options.seed = seed
            let result = try await SensorSimulator(options: options, logger: logger).run { sent, elapsed in
                FileHandle.standardError.write(Data(String(format: "\rsent %d messages in %.0fs (%.0f/s)   ", sent, elapsed, Double(sent) / max(elapsed, 0.001)).utf8))
            }
            try result.write(to: manifest)
            print("\npublished \(result.messagesPublished) messages, \(result.entries.count) readings, all acknowledged by the broker; manifest: \(manifest)")
        } catch {
            throw Failure("tributary-sim sensors: \(error)")
        }
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

    func run() async throws {
        let report: Verifier.Report
        do {
            report = try await Verifier.verify(try Manifest.read(from: manifest), sink: sink, caFile: caFile)
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
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "tributary-sim")
        logger.logLevel = .notice
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
