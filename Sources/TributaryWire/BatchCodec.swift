import SwiftProtobuf
import TributaryCore

/// Turns readings into the compact wire batch and back.
///
/// Readings are grouped by series (gateway, sensor, metric, topic, unit, labels, value type),
/// strings are interned in one table, and event times are delta-encoded within a series.
public enum BatchCodec {
    public static func encode(identity: BatchIdentity, readings: [Reading], sealedAtMs: Int64) -> Tributary_V1_Batch {
        var strings = StringTable()
        var seriesIndex: [SeriesKey: Int] = [:]
        var series: [Tributary_V1_Series] = []
        var lastTime: [Int64] = []
        let baseTime = readings.first?.timeMs ?? 0

        for reading in readings {
            let key = SeriesKey(reading)
            let index: Int
            if let existing = seriesIndex[key] {
                index = existing
            } else {
                var s = Tributary_V1_Series()
                s.gateway = strings.index(reading.gatewayID)
                s.sensor = strings.index(reading.sensorID)
                s.metric = strings.index(reading.metric)
                s.topic = strings.index(reading.topic)
                s.unit = strings.index(reading.unit ?? "")
                for (k, v) in reading.labels.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
                    s.labelKeys.append(strings.index(k))
                    s.labelValues.append(strings.index(v))
                }
                s.kind = key.kind
                index = series.count
                seriesIndex[key] = index
                series.append(s)
                lastTime.append(baseTime)
            }
            series[index].timeDeltaMs.append(reading.timeMs - lastTime[index])
            lastTime[index] = reading.timeMs
            let offset = reading.receivedAtMs - reading.timeMs
            if offset != 0 && series[index].receivedOffsetMs.isEmpty {
                // Until now every offset was zero and left out; write them now.
                series[index].receivedOffsetMs = Array(repeating: 0, count: series[index].timeDeltaMs.count - 1)
            }
            if offset != 0 || !series[index].receivedOffsetMs.isEmpty {
                series[index].receivedOffsetMs.append(offset)
            }
            switch reading.value {
            case .double(let d): series[index].doubles.append(d)
            case .integer(let i): series[index].integers.append(i)
            case .boolean(let b): series[index].booleans.append(b)
            case .text(let t): series[index].texts.append(strings.index(t))
            }
        }

        for index in series.indices where series[index].kind == .double {
            DecimalCoding.compact(&series[index])
        }
        var batch = Tributary_V1_Batch()
        batch.id = Tributary_V1_BatchId(identity)
        batch.baseTimeMs = baseTime
        batch.strings = strings.strings
        batch.series = series
        batch.readingCount = UInt32(readings.count)
        batch.sealedAtMs = sealedAtMs
        return batch
    }

    /// Checks every index and length, then expands the batch into readings.
    public static func decode(_ batch: Tributary_V1_Batch, limits: BatchLimits = .init()) throws(BatchDecodingError) -> [Reading] {
        guard batch.hasID, !batch.id.gatewayID.isEmpty, !batch.id.epoch.isEmpty else { throw .missingIdentity }
        // The identity is copied into every row the batch writes: bounded like any identifier.
        guard batch.id.epoch.utf8.count <= ReadingLimits.maxEpochBytes else {
            throw .badIdentity("the epoch has \(batch.id.epoch.utf8.count) bytes; the limit is \(ReadingLimits.maxEpochBytes)")
        }
        guard !batch.id.epoch.unicodeScalars.contains(where: Printable.isControl) else {
            throw .badIdentity("the epoch holds control characters")
        }
        guard batch.id.gatewayID.utf8.count <= ReadingLimits.maxGatewayIDBytes else {
            throw .badIdentity("the gateway id has \(batch.id.gatewayID.utf8.count) bytes; the limit is \(ReadingLimits.maxGatewayIDBytes)")
        }
        guard Int(batch.readingCount) <= limits.maxReadings else {
            throw .tooManyReadings(count: Int(batch.readingCount), limit: limits.maxReadings)
        }
        let strings = batch.strings
        for s in strings where s.utf8.count > limits.maxStringBytes {
            throw .stringTooLong(length: s.utf8.count, limit: limits.maxStringBytes)
        }
        func string(_ index: UInt32, _ field: String) throws(BatchDecodingError) -> String {
            guard Int(index) < strings.count else { throw .badStringIndex(field: field, index: index) }
            return strings[Int(index)]
        }
        var readings: [Reading] = []
        readings.reserveCapacity(Int(batch.readingCount))
        var costs: [(descriptionBytes: Int, readings: Int)] = []
        var textBytes = 0
        for (number, s) in batch.series.enumerated() {
            let count = s.timeDeltaMs.count
            guard readings.count + count <= Int(batch.readingCount) else {
                throw .countMismatch(declared: Int(batch.readingCount), actual: readings.count + count)
            }
            let valueCount: Int
            var decimals: [Double] = []
            switch s.kind {
            case .double where !s.decimalDeltas.isEmpty:
                guard s.doubles.isEmpty else { throw .badSeries(number: number, detail: "both doubles and decimal values") }
                guard let expanded = DecimalCoding.expand(s.decimalDeltas, scale: s.decimalScale) else {
                    throw .badSeries(number: number, detail: "decimal values out of range (scale \(s.decimalScale))")
                }
                decimals = expanded
                valueCount = decimals.count
            case .double: valueCount = s.doubles.count
            case .integer: valueCount = s.integers.count
            case .boolean: valueCount = s.booleans.count
            case .text: valueCount = s.texts.count
            default: throw .badSeries(number: number, detail: "value kind \(s.kind.rawValue) is not known")
            }
            let otherValues = s.doubles.count + s.decimalDeltas.count + s.integers.count + s.booleans.count + s.texts.count - valueCount
            guard valueCount == count, otherValues == 0 else {
                throw .badSeries(number: number, detail: "\(count) times but \(valueCount) values of its kind and \(otherValues) of others")
            }
            guard s.receivedOffsetMs.isEmpty || s.receivedOffsetMs.count == count else {
                throw .badSeries(number: number, detail: "received offsets do not match the readings")
            }
            guard s.labelKeys.count == s.labelValues.count else {
                throw .badSeries(number: number, detail: "label keys and values differ in number")
            }
            let gateway = try string(s.gateway, "gateway")
            let sensor = try string(s.sensor, "sensor")
            let metric = try string(s.metric, "metric")
            let topic = try string(s.topic, "topic")
            let unit = try string(s.unit, "unit")
            var labelPairs: [(String, String)] = []
            for (k, v) in zip(s.labelKeys, s.labelValues) {
                labelPairs.append((try string(k, "label key"), try string(v, "label value")))
            }
            // The same bounds the agent checked before it buffered the readings.
            if let problem = ReadingLimits.violation(gateway: gateway, sensor: sensor, metric: metric, topic: topic, unit: unit, labels: labelPairs) {
                throw .badSeries(number: number, detail: problem)
            }
            var labels: [String: String] = [:]
            for (k, v) in labelPairs { labels[k] = v }
            costs.append((gateway.utf8.count + sensor.utf8.count + metric.utf8.count + topic.utf8.count + unit.utf8.count
                          + labelPairs.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 6 }, count))
            var time = batch.baseTimeMs
            for i in 0..<count {
                let (t, overflow) = time.addingReportingOverflow(s.timeDeltaMs[i])
                guard !overflow else { throw .badSeries(number: number, detail: "time overflows") }
                time = t
                let value: ReadingValue
                switch s.kind {
                case .double: value = .double(decimals.isEmpty ? s.doubles[i] : decimals[i])
                case .integer: value = .integer(s.integers[i])
                case .boolean: value = .boolean(s.booleans[i])
                default:
                    let text = try string(s.texts[i], "text value")
                    textBytes += text.utf8.count
                    value = .text(text)
                }
                let offset = s.receivedOffsetMs.isEmpty ? 0 : s.receivedOffsetMs[i]
                readings.append(Reading(
                    gatewayID: gateway, sensorID: sensor, metric: metric, topic: topic,
                    timeMs: time, receivedAtMs: time &+ offset, value: value,
                    unit: unit.isEmpty ? nil : unit, labels: labels))
            }
        }
        guard readings.count == Int(batch.readingCount) else {
            throw .countMismatch(declared: Int(batch.readingCount), actual: readings.count)
        }
        try checkCost(series: costs, textBytes: textBytes, readingCount: readings.count, strings: strings, limits: limits)
        return readings
    }

    /// The bounds on what the batch becomes in a sink (see `BatchLimits`): `series` is each
    /// series' ids, topic, unit and labels in bytes with its number of readings.
    static func checkCost(series: [(descriptionBytes: Int, readings: Int)], textBytes: Int, readingCount: Int, strings: [String],
                          limits: BatchLimits) throws(BatchDecodingError) {
        var cost = BatchCost.Totals(carried: strings.reduce(0) { $0 + $1.utf8.count } + BatchCost.carriedPerReading * readingCount,
                                    stored: textBytes + ReadingLimits.rowOverheadBytes * readingCount, expanded: textBytes)
        for s in series {
            cost.expanded += s.readings * (s.descriptionBytes + ReadingLimits.rowOverheadBytes)
            cost.stored += s.descriptionBytes
        }
        if let problem = cost.problem(limits) { throw .tooExpensive(problem) }
    }
}

/// What a batch costs a sink against what it carries (the bounds of `BatchLimits`), added up a
/// reading at a time as the agent fills a batch: it stops before a bound would break, so the
/// aggregator, which adds up the same figures from the decoded batch, never refuses one.
public struct BatchCost: Sendable {
    /// What a reading's times and value take on the wire, at least, in the "carried" figure.
    public static let carriedPerReading = 16

    public struct Totals: Sendable, Equatable {
        /// The batch's distinct strings and 16 bytes a reading.
        public var carried: Int
        /// As the SQLite sink stores it: each series' description once, a row per reading.
        public var stored: Int
        /// As rows with their whole description (ClickHouse's insert).
        public var expanded: Int

        /// Which bound it breaks, in words, or nil.
        public func problem(_ limits: BatchLimits) -> String? {
            if expanded > limits.maxExpandedBytes {
                return "its rows would take \(expanded) bytes in a sink; the limit is \(limits.maxExpandedBytes): send fewer readings per batch"
            }
            if stored > limits.storedFactor * carried + limits.storedSlackBytes {
                return "it would take \(stored) bytes to store, more than \(limits.storedFactor) times the \(carried) it carries"
            }
            return nil
        }
    }

    public private(set) var totals = Totals(carried: 0, stored: 0, expanded: 0)
    private var strings: Set<ExactString> = [ExactString("")]
    private var series: Set<SeriesKey> = []

    public init() {}

    /// Adds `reading` unless the batch would then break a bound of `limits`: false, and the
    /// totals stay as they were. (An empty batch takes its first reading whatever it costs:
    /// the aggregator's bounds are far above one reading's.)
    @discardableResult
    public mutating func add(_ reading: Reading, within limits: BatchLimits? = nil) -> Bool {
        let text: String?
        if case .text(let t) = reading.value { text = t } else { text = nil }
        let unit = reading.unit ?? ""
        var description = reading.gatewayID.utf8.count + reading.sensorID.utf8.count + reading.metric.utf8.count
            + reading.topic.utf8.count + unit.utf8.count
        for (key, value) in reading.labels { description += key.utf8.count + value.utf8.count + 6 }
        let textBytes = text?.utf8.count ?? 0
        let key = SeriesKey(reading)
        let newSeries = !series.contains(key)
        // The strings the batch does not carry yet. A series already in the batch brought all of
        // its own, so then only a text value can be new (and the sealer asks for every reading:
        // no arrays or sets built in that case).
        var newStrings: [ExactString] = []
        func consider(_ string: String) {
            let exact = ExactString(string)
            if !strings.contains(exact) && !newStrings.contains(exact) { newStrings.append(exact) }
        }
        if newSeries {
            for string in [reading.gatewayID, reading.sensorID, reading.metric, reading.topic, unit] { consider(string) }
            for (name, value) in reading.labels {
                consider(name)
                consider(value)
            }
        }
        if let text { consider(text) }
        var next = totals
        next.carried += Self.carriedPerReading + newStrings.reduce(0) { $0 + $1.value.utf8.count }
        next.stored += ReadingLimits.rowOverheadBytes + textBytes + (newSeries ? description : 0)
        next.expanded += description + ReadingLimits.rowOverheadBytes + textBytes
        if let limits, count > 0, next.problem(limits) != nil { return false }
        totals = next
        strings.formUnion(newStrings)
        if newSeries { series.insert(key) }
        count += 1
        return true
    }

    public private(set) var count = 0
}

/// Short decimals as scaled integers, delta-coded (`Series.decimal_deltas`): 21.53 is 2153 at
/// scale 2, and the next reading, 21.57, costs one byte (a delta of 4) instead of eight.
enum DecimalCoding {
    static let maxScale: UInt32 = 9
    private static let powers: [Double] = (0...Int(maxScale)).map { (0..<$0).reduce(1.0) { acc, _ in acc * 10 } }
    /// Past this a scaled value may not be an exact Double.
    private static let exactLimit = Double(1 << 53)

    /// Moves the series' doubles into `decimal_deltas` when one scale (the smallest up to 6)
    /// makes every value an integer that divides back to the very same bits; otherwise
    /// leaves them as they are (NaN, -0.0, 1e-300 and long fractions stay doubles).
    static func compact(_ series: inout Tributary_V1_Series) {
        let values = series.doubles
        guard !values.isEmpty else { return }
        scales: for scale in 0...6 {
            let power = powers[scale]
            var deltas: [Int64] = []
            deltas.reserveCapacity(values.count)
            var previous: Int64 = 0
            for value in values {
                let scaled = (value * power).rounded()
                guard scaled.isFinite, abs(scaled) < exactLimit else { continue scales }
                let integer = Int64(scaled)
                guard (Double(integer) / power).bitPattern == value.bitPattern else { continue scales }
                deltas.append(integer &- previous)
                previous = integer
            }
            series.decimalDeltas = deltas
            series.decimalScale = UInt32(scale)
            series.doubles = []
            return
        }
    }

    /// The values back, exactly as `compact` checked them; nil when a sum leaves the range an
    /// honest encoder produces.
    static func expand(_ deltas: [Int64], scale: UInt32) -> [Double]? {
        guard scale <= maxScale else { return nil }
        let power = powers[Int(scale)]
        var values: [Double] = []
        values.reserveCapacity(deltas.count)
        var current: Int64 = 0
        for delta in deltas {
            let (sum, overflow) = current.addingReportingOverflow(delta)
            guard !overflow else { return nil }
            current = sum
            values.append(Double(current) / power)
        }
        return values
    }
}

/// What one batch may hold; the aggregator refuses more. Each reading's own bounds are
/// `ReadingLimits`, shared with the agent.
///
/// A batch names each string once and each reading by a few bytes, so what it becomes in a
/// sink can be far more than what it carries: 300 readings of one series with a 1 MB epoch
/// grew a SQLite sink by 600 MB. Two bounds keep that a small multiple:
/// - as rows with their whole description (ClickHouse's insert), at most `maxExpandedBytes`;
/// - as the SQLite sink stores it (descriptions once, texts per reading), at most
///   `storedFactor` times what the batch carries (its strings, and 16 bytes per reading) plus
///   `storedSlackBytes`.
public struct BatchLimits: Sendable {
    public var maxReadings = 100_000
    /// The longest string a batch may hold, which is the longest text value (identifiers have
    /// smaller bounds of their own): `limits.max_string_bytes`.
    public var maxStringBytes = ReadingLimits.defaultMaxTextBytes
    /// The aggregator's `limits.max_decompressed_bytes` (64 MiB by default).
    public var maxExpandedBytes = 64 << 20
    public var storedFactor = 8
    public var storedSlackBytes = 1 << 20
    /// What an agent puts in one batch at most, as rows (`ReadingLimits.expandedBytes`): a
    /// quarter of the aggregator's default bound, so it holds for an aggregator with less.
    public static let agentMaxExpandedBytes = 16 << 20
    public init() {}
}

public enum BatchDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    case missingIdentity
    case badIdentity(String)
    case tooManyReadings(count: Int, limit: Int)
    case stringTooLong(length: Int, limit: Int)
    case badStringIndex(field: String, index: UInt32)
    case badSeries(number: Int, detail: String)
    case countMismatch(declared: Int, actual: Int)
    /// Valid, but it would cost a sink far more than it carries.
    case tooExpensive(String)

    public var description: String {
        switch self {
        case .missingIdentity: "batch has no identity (gateway id, epoch, sequence)"
        case .badIdentity(let detail): "batch identity: \(detail)"
        case .tooManyReadings(let count, let limit): "batch declares \(count) readings; the limit is \(limit)"
        case .stringTooLong(let length, let limit): "a string of \(length) bytes exceeds the limit of \(limit)"
        case .badStringIndex(let field, let index): "\(field) refers to string \(index), which the batch does not have"
        case .badSeries(let number, let detail): "series \(number): \(detail)"
        case .countMismatch(let declared, let actual): "batch declares \(declared) readings but holds \(actual)"
        case .tooExpensive(let detail): "batch too large for what it carries: \(detail)"
        }
    }
}

/// A series as the encoder and its cost group readings: its identity and the value's kind.
private struct SeriesKey: Hashable {
    let series: SeriesIdentity
    let kind: Tributary_V1_ValueKind

    init(_ r: Reading) {
        series = SeriesIdentity(r)
        switch r.value {
        case .double: kind = .double
        case .integer: kind = .integer
        case .boolean: kind = .boolean
        case .text: kind = .text
        }
    }
}

/// The batch's strings, each once, by its bytes.
private struct StringTable {
    var strings: [String] = [""]
    var indexes: [ExactString: UInt32] = [ExactString(""): 0]

    mutating func index(_ s: String) -> UInt32 {
        let key = ExactString(s)
        if let i = indexes[key] { return i }
        let i = UInt32(strings.count)
        strings.append(s)
        indexes[key] = i
        return i
    }
}

extension Tributary_V1_BatchId {
    public init(_ identity: BatchIdentity) {
        self.init()
        gatewayID = identity.gatewayID
        epoch = identity.epoch
        sequence = identity.sequence
    }

    public var identity: BatchIdentity { BatchIdentity(gatewayID: gatewayID, epoch: epoch, sequence: sequence) }
}
