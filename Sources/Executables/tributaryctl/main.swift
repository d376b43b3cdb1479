import ArgumentParser
import Foundation
import TributaryCore
import TributaryCtl

@main
struct Ctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributaryctl",
        abstract: "Shows the sync state of a Tributary fleet, from an aggregator's admin API.",
        subcommands: [Status.self, Gateways.self])
}

struct Connection: ParsableArguments {
    @Option(name: .long, help: "Aggregator URL (default: $TRIBUTARY_AGGREGATOR or http://127.0.0.1:8470).")
    var aggregator: String = ProcessInfo.processInfo.environment["TRIBUTARY_AGGREGATOR"] ?? "http://127.0.0.1:8470"

    @Flag(name: .long, help: "Print the aggregator's JSON instead of a table.")
    var json = false

    func show(_ render: (FleetView) -> String) async throws {
        do {
            let (view, data) = try await FleetClient.fetch(aggregator: aggregator)
            if json {
                FileHandle.standardOutput.write(data)
                print()
            } else {
                print(render(view), terminator: "")
            }
        } catch {
            throw Failure("tributaryctl: \(error)")
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fleet summary: gateways online and stale, backlog, worst lag, losses.")
    @OptionGroup var connection: Connection

    func run() async throws {
        try await connection.show { FleetRendering.status($0, aggregator: connection.aggregator) }
    }
}

struct Gateways: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One row per gateway: last seen, backlog, oldest unsent, synced, quarantined, last error.")
    @OptionGroup var connection: Connection

    func run() async throws {
        try await connection.show(FleetRendering.gatewaysTable)
    }
}

/// Ends the command with one clear line on stderr and exit code 1 (no usage text).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
