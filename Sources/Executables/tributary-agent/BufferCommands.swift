import ArgumentParser
import Foundation
import TributaryAgent

/// Where the buffer is: the agent's configuration file, or its data directory alone.
struct BufferOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The agent's YAML configuration file (or the environment variable TRIBUTARY_AGENT_CONFIG).",
        discussion: "It says where the buffer is (data_dir) and, for a replay while no agent runs, how payloads decode."))
    var config: String?

    @Option(name: .long, help: "The agent's data directory, holding buffer.sqlite (overrides data_dir).")
    var dataDir: String?

    @Option(name: .long, help: "This gateway's id (overrides gateway_id).")
    var gatewayId: String?

    var configFile: String? { config ?? ProcessInfo.processInfo.environment["TRIBUTARY_AGENT_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } }

    /// With a configuration file, from it (flags overriding); with `--data-dir` alone, that
    /// directory and no configuration; with neither, the agent's defaults.
    func bufferOperator() throws -> BufferOperator {
        if configFile == nil, let dataDir { return BufferOperator(dataDirectory: dataDir, config: nil) }
        guard configFile != nil else {
            throw Failure("tributary-agent: say where the buffer is: --config FILE (the agent's, e.g. /etc/tributary/agent.yaml), "
                          + "the environment variable TRIBUTARY_AGENT_CONFIG, or --data-dir DIR")
        }
        do {
            let settings = try AgentConfig.load(file: configFile, overrides: .init(gatewayID: gatewayId, dataDirectory: dataDir))
            return BufferOperator(config: settings)
        } catch {
            throw Failure("tributary-agent: \(error)")
        }
    }
}

/// `--json` for the commands that print.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false
}

/// Runs a tool's body; an `OperatorError` (or any other) ends it with one line and exit code 1.
func operatorRun(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as Failure {
        throw failure
    } catch {
        throw Failure("tributary-agent: \(error)")
    }
}

// MARK: quarantine

struct QuarantineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine",
        abstract: "Payloads the agent could not decode, kept with their topic, bytes and reason.",
        discussion: """
            Reads (list, show, export) work on the buffer file beside a running agent. Writes (replay, purge) are \
            done by the running agent, asked over its control socket (data_dir/control.sock), or by this tool itself \
            while no agent runs (it then holds the data directory's lock, and needs --config). \
            Exit code 0 when done, 1 with one line saying why not.
            """,
        subcommands: [List.self, Show.self, Export.self, Replay.self, Purge.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists quarantined payloads, oldest first: id, when received, topic, size, reason.")
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions
        @Option(name: .long, help: "Only topics this MQTT filter matches (+ and # wildcards).") var topic: String?
        @Option(name: .long, help: "Only payloads received since: an ISO 8601 time, or a duration ago (2h, 7d).") var since: String?
        @Option(name: .long, help: "At most this many (0: all).") var limit = 100

        func run() async throws {
            try await operatorRun {
                let reader = try buffer.bufferOperator().reader()
                let entries = try QuarantineSelection(topic: topic, since: since).entries(reader, limit: limit == 0 ? nil : limit)
                if output.json {
                    print(OperatorRendering.json(entries.map { OperatorRendering.QuarantineJSON($0, payload: false) }))
                } else {
                    print(OperatorRendering.quarantineTable(entries, held: try reader.quarantineCount()))
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Shows one quarantined payload: its topic, reason, and bytes (as text when they are UTF-8, else a hex dump).")
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The payload's id (from list).") var id: Int64

        func run() async throws {
            try await operatorRun {
                let reader = try buffer.bufferOperator().reader()
                guard let entry = try reader.quarantineEntry(id: id) else {
                    throw Failure("tributary-agent: the quarantine holds no payload with id \(id) (replayed or purged, or never there): see quarantine list")
                }
                print(output.json ? OperatorRendering.json(OperatorRendering.QuarantineJSON(entry, payload: true))
                                  : OperatorRendering.quarantineDetail(entry))
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Writes quarantined payloads as JSON Lines (one object a payload, bytes in base64 and as text when UTF-8).",
            discussion: "Nothing leaves the quarantine: purge it afterwards if the export is what you keep.")
        @OptionGroup var buffer: BufferOptions
        @Option(name: .long, help: "Only topics this MQTT filter matches (+ and # wildcards).") var topic: String?
        @Option(name: .long, help: "Only payloads received since: an ISO 8601 time, or a duration ago (2h, 7d).") var since: String?
        @Option(name: .long, help: "Write to this file (made 0600) instead of standard output.") var output: String?

        func run() async throws {
            try await operatorRun {
                let reader = try buffer.bufferOperator().reader()
                let sink = try LineSink(path: output)
                var count = 0
                try QuarantineSelection(topic: topic, since: since).scan(reader) { entry in
                    try sink.write(OperatorRendering.json(OperatorRendering.QuarantineJSON(entry, payload: true), line: true))
                    count += 1
                    return true
                }
                try sink.close()
                if output != nil { print("\(count) payload(s) exported to \(output!)") }
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decodes quarantined payloads again with the current configuration and buffers what decodes now.",
            discussion: """
                After a template or decoder fix. Each payload goes through the path a live message takes: its \
                subscription's decoder, rules and reading limits, and the redelivery filter (a second copy of the same \
                message is not stored twice). What decodes leaves the quarantine, and its readings are sent like any \
                other (counted as received); what still fails stays, with its new reason. With an agent running, the \
                agent replays with the configuration IT runs with: reload or restart it after editing the file. With no \
                agent running, this tool replays with --config. It never waits for room: at the buffer's quota it stops \
                and says so (exit 1), and the rest stays for a later replay. Replaying again replays only what is left.
                """)
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions
        @Option(name: .long, help: "Only topics this MQTT filter matches (+ and # wildcards).") var topic: String?

        func run() async throws {
            try await operatorRun {
                let (outcome, via) = try await buffer.bufferOperator().quarantine(.replay(topic: OperatorInput.topic(topic)))
                switch outcome {
                case .replayed(let summary):
                    print(output.json ? OperatorRendering.json(summary) : OperatorRendering.replaySummary(summary, via: via))
                    if let stopped = summary.stopped { throw Failure("tributary-agent: replay stopped early: \(stopped)") }
                case .purged, .failed:
                    throw Failure("tributary-agent: replay not done: \(outcome)")
                }
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deletes quarantined payloads received longer ago than --older-than (export them first to keep them).",
            discussion: "The payloads are gone for good. The quarantined total (payloads ever quarantined) does not go down; the purged count goes up.")
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions
        @Option(name: .long, help: "Age: 90s, 30m, 12h, 7d, 2w (0s: every payload).") var olderThan: String
        @Option(name: .long, help: "Only topics this MQTT filter matches (+ and # wildcards).") var topic: String?

        func run() async throws {
            try await operatorRun {
                let age = try OperatorInput.durationMs(olderThan, option: "--older-than")
                // Everything received at or before the command started counts as 0s old.
                let before = OperatorInput.nowMs() - age + (age == 0 ? 1 : 0)
                let (outcome, via) = try await buffer.bufferOperator().quarantine(.purge(receivedBeforeMs: before, topic: OperatorInput.topic(topic)))
                guard case .purged(let count) = outcome else { throw Failure("tributary-agent: purge not done: \(outcome)") }
                if output.json {
                    print(OperatorRendering.json(["purged": count]))
                } else {
                    print("\(count) quarantined payload(s) purged (by \(via == .agent ? "the running agent" : "this tool; no agent running"))")
                }
            }
        }
    }
}

/// Standard output, or a new file only its owner can read (exports hold devices' data).
final class LineSink {
    private let handle: FileHandle

    init(path: String?) throws {
        guard let path else {
            handle = .standardOutput
            return
        }
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw Failure("tributary-agent: cannot write \(path)")
        }
        self.handle = handle
    }

    func write(_ line: String) throws {
        try handle.write(contentsOf: Data((line + "\n").utf8))
    }

    func close() throws {
        if handle !== FileHandle.standardOutput { try handle.close() }
    }
}

// MARK: set-aside

struct SetAsideCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-aside",
        abstract: "Batches the aggregator refused for good, kept on disk out of the send queue.",
        discussion: """
            Reads (list, show, export) work on the buffer file beside a running agent. Writes (retry, purge) are done \
            by the running agent, asked over its control socket (data_dir/control.sock), or by this tool itself while \
            no agent runs (it then holds the data directory's lock, and needs --config). \
            Exit code 0 when done, 1 with one line saying why not (an unknown sequence, no buffer file).
            """,
        subcommands: [List.self, Show.self, Retry.self, Export.self, Purge.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists set-aside batches: sequence, readings, oldest reading, attempts, and why the aggregator refused it.")
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await operatorRun {
                let batches = try buffer.bufferOperator().reader().setAsideBatches()
                print(output.json ? OperatorRendering.json(batches.map { OperatorRendering.SetAsideJSON($0, contents: false) })
                                  : OperatorRendering.setAsideTable(batches))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows one set-aside batch: its identity, why it was refused, and its series (with --json, every reading).")
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The batch's sequence number (from list).") var sequence: UInt64

        func run() async throws {
            try await operatorRun {
                guard let batch = try buffer.bufferOperator().reader().setAsideBatches(sequence: sequence).first else {
                    throw Failure("tributary-agent: no batch \(sequence) is set aside (retried, purged, or never set aside): see set-aside list")
                }
                print(output.json ? OperatorRendering.json(OperatorRendering.SetAsideJSON(batch, contents: true))
                                  : OperatorRendering.setAsideDetail(batch))
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Puts set-aside batches back in the send queue (after the cause of the refusal was fixed).",
            discussion: """
                The batch is sent as it was sealed (same identity, same bytes), so an aggregator that has it already \
                answers duplicate and the sink holds it once. Its attempts start again from 0; if the aggregator \
                refuses it again, it is set aside again.
                """)
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Sequence numbers of the batches (from list).") var sequences: [UInt64] = []
        @Flag(name: .long, help: "Every set-aside batch.") var all = false

        func run() async throws {
            try await operatorRun {
                try await setAsideWrite(.retry, buffer: buffer, output: output, sequences: sequences, all: all)
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Writes set-aside batches as JSON Lines: one object a batch, with its readings decoded.",
            discussion: "Nothing leaves the buffer: purge the batches afterwards if the export is what you keep.")
        @OptionGroup var buffer: BufferOptions
        @Option(name: .long, help: "Write to this file (made 0600) instead of standard output.") var output: String?

        func run() async throws {
            try await operatorRun {
                let batches = try buffer.bufferOperator().reader().setAsideBatches()
                let sink = try LineSink(path: output)
                for batch in batches { try sink.write(OperatorRendering.json(OperatorRendering.SetAsideJSON(batch, contents: true), line: true)) }
                try sink.close()
                if output != nil { print("\(batches.count) batch(es) exported to \(output!)") }
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deletes set-aside batches: their readings never reach the sink and are counted as dropped.",
            discussion: "Give sequence numbers, --older-than (the batch's oldest reading), or --all. Export them first to keep them.")
        @OptionGroup var buffer: BufferOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Sequence numbers of the batches (from list).") var sequences: [UInt64] = []
        @Option(name: .long, help: "Batches whose oldest reading is older than this: 90s, 30m, 12h, 7d, 2w.") var olderThan: String?
        @Flag(name: .long, help: "Every set-aside batch.") var all = false

        func run() async throws {
            try await operatorRun {
                var chosen = sequences
                if let olderThan {
                    let before = OperatorInput.nowMs() - (try OperatorInput.durationMs(olderThan, option: "--older-than"))
                    chosen += try buffer.bufferOperator().setAsideSequences(receivedBeforeMs: before)
                    if chosen.isEmpty {
                        print(output.json ? OperatorRendering.json(SetAsideOutcomeJSON(SetAsideOutcome())) : "no set-aside batch is older than \(olderThan)")
                        return
                    }
                }
                try await setAsideWrite(.purge, buffer: buffer, output: output, sequences: chosen, all: all)
            }
        }
    }
}

struct SetAsideOutcomeJSON: Encodable {
    let outcome: SetAsideOutcome
    init(_ outcome: SetAsideOutcome) { self.outcome = outcome }
    func encode(to encoder: any Encoder) throws { try outcome.encode(to: encoder) }
}

/// Retry or purge: the sequences given (or every set-aside batch), by the running agent or this
/// tool; exit 1 naming any sequence that is not set aside.
func setAsideWrite(_ action: SetAsideAction, buffer: BufferOptions, output: OutputOptions, sequences: [UInt64], all: Bool) async throws {
    guard all != !sequences.isEmpty else {
        throw Failure("tributary-agent: give the batches' sequence numbers, or --all (not both)")
    }
    let op = try buffer.bufferOperator()
    var chosen = sequences
    if all {
        chosen = try op.setAsideSequences()
        if chosen.isEmpty {
            print(output.json ? OperatorRendering.json(SetAsideOutcomeJSON(SetAsideOutcome())) : "no batch is set aside")
            return
        }
    }
    let (outcome, via) = try await op.setAside(action, sequences: chosen)
    if output.json {
        print(OperatorRendering.json(SetAsideOutcomeJSON(outcome)))
    } else {
        let what = action == .retry ? "back in the send queue" : "purged (readings counted as dropped)"
        let by = via == .agent ? "by the running agent" : "by this tool; no agent running"
        for batch in outcome.done { print("batch \(batch.sequence): \(batch.readings) reading(s) \(what)") }
        if !outcome.done.isEmpty || outcome.unknown.isEmpty { print("\(outcome.done.count) batch(es) \(what), \(by)") }
    }
    if !outcome.unknown.isEmpty {
        throw Failure("tributary-agent: no batch \(outcome.unknown.map(String.init).joined(separator: ", ")) is set aside (retried, purged, or never set aside): see set-aside list")
    }
}
