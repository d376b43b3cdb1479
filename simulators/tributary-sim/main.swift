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
        subcommands: [Sensors.self, Verify.self])
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
    @Option(help: "Sink, sqlite:PATH.") var sink: String

    func run() async throws {
        let report: Verifier.Report
        do {
            report = try Verifier.verify(try Manifest.read(from: manifest), sink: sink)
        } catch {
            throw Failure("tributary-sim verify: \(error)")
        }
        print(report)
        if !report.passed { throw ExitCode(1) }
    }
}

/// Ends the command with one clear line on stderr and exit code 1 (no usage text).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
