import TributaryCore

/// What the fault proxy does to traffic at one moment.
public struct ProxyFaults: Sendable, Equatable {
    /// Added before each chunk is forwarded, in each direction.
    public var latencyMs = 0
    /// Per connection and direction; 0 is unlimited.
    public var bytesPerSecond: Int64 = 0
    /// Black hole: connections are accepted, nothing is forwarded (clients time out).
    public var partitioned = false
    /// New connections are closed at once (like a service that is down).
    public var refusing = false
    /// The share of new connections whose first answer from the target is cut: the request
    /// arrived, the reply never does (a lost acknowledgement).
    public var dropResponses = 0.0

    public init() {}
}

/// A timed script of fault changes, from flags or a small file, one step per line:
///
///     # at   action         argument
///     0s     latency        50ms
///     5s     partition                  # until heal
///     8s     heal
///     10s    drop-responses 0.5
///     12s    disconnect                 # cut every open connection now
///     15s    bandwidth      64k         # bytes per second; 0 lifts the limit
///     20s    refuse                     # until accept
///     22s    accept
///     25s    normal                     # every fault off
///     30s    end                        # the proxy exits
public struct FaultSchedule: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        case latency(ms: Int)
        case bandwidth(bytesPerSecond: Int64)
        case partition, heal
        case refuse, accept
        case dropResponses(share: Double)
        case disconnect
        case normal
        case end
    }

    public struct Step: Sendable, Equatable {
        public var atMs: Int64
        public var action: Action
        public init(atMs: Int64, action: Action) {
            self.atMs = atMs
            self.action = action
        }
    }

    /// In time order (a stable sort keeps the file's order for equal times).
    public private(set) var steps: [Step]

    public init(steps: [Step] = []) {
        self.steps = steps.enumerated().sorted { ($0.element.atMs, $0.offset) < ($1.element.atMs, $1.offset) }.map(\.element)
    }

    public static func parse(_ text: String, source: String = "script") throws(FaultScheduleError) -> FaultSchedule {
        var steps: [Step] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard !words.isEmpty else { continue }
            let place = "\(source):\(index + 1)"
            guard words.count >= 2, let at = Units.milliseconds(words[0]) else {
                throw FaultScheduleError("\(place): expected '<time> <action> [argument]', e.g. '5s partition', found '\(line)'")
            }
            steps.append(Step(atMs: at, action: try action(words[1], argument: words.count > 2 ? words[2] : nil, at: place)))
        }
        return FaultSchedule(steps: steps)
    }

    public static func action(_ name: String, argument: String?, at place: String) throws(FaultScheduleError) -> Action {
        func need<T>(_ parse: (String) -> T?, _ example: String) throws(FaultScheduleError) -> T {
            guard let argument, let value = parse(argument) else {
                throw FaultScheduleError("\(place): \(name) needs an argument such as \(example)")
            }
            return value
        }
        switch name {
        case "latency": return .latency(ms: Int(try need(Units.milliseconds, "50ms")))
        case "bandwidth": return .bandwidth(bytesPerSecond: try need(Units.bytes, "64k"))
        case "drop-responses":
            let share = try need({ Double($0) }, "0.5")
            guard (0...1).contains(share) else { throw FaultScheduleError("\(place): drop-responses takes a share between 0 and 1") }
            return .dropResponses(share: share)
        case "partition": return .partition
        case "heal": return .heal
        case "refuse": return .refuse
        case "accept": return .accept
        case "disconnect": return .disconnect
        case "normal": return .normal
        case "end": return .end
        default:
            throw FaultScheduleError("\(place): unknown action '\(name)' (latency, bandwidth, partition, heal, refuse, accept, drop-responses, disconnect, normal, end)")
        }
    }
}

extension ProxyFaults {
    /// The state after `action`; `disconnect` and `end` are events, not state.
    public func applying(_ action: FaultSchedule.Action) -> ProxyFaults {
        var next = self
        switch action {
        case .latency(let ms): next.latencyMs = ms
        case .bandwidth(let rate): next.bytesPerSecond = rate
        case .partition: next.partitioned = true
        case .heal: next.partitioned = false
        case .refuse: next.refusing = true
        case .accept: next.refusing = false
        case .dropResponses(let share): next.dropResponses = share
        case .normal: next = ProxyFaults()
        case .disconnect, .end: break
        }
        return next
    }
}

public struct FaultScheduleError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
