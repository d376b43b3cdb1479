/// Writes the Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
/// metric family, then its samples. Families are collected at scrape time from the figures the
/// services keep anyway, so there is no second set of counters to drift from the first.
public struct PrometheusText: Sendable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public private(set) var text = ""
    private var declared: Set<String> = []

    public init() {}

    /// Declares a family; samples of an undeclared family are a programming error.
    public mutating func family(_ name: String, _ kind: Kind, help: String) {
        precondition(!declared.contains(name), "metric family \(name) declared twice")
        declared.insert(name)
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    public mutating func sample(_ name: String, _ value: Double) {
        sample(name, [:], value)
    }

    public mutating func sample<T: BinaryInteger>(_ name: String, _ value: T) {
        sample(name, [:], Double(value))
    }

    public mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.key)=\"\(Self.escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
        }
        text += " " + Self.format(value) + "\n"
    }

    public mutating func sample<T: BinaryInteger>(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: T) {
        sample(name, labels, Double(value))
    }

    /// A whole family with one unlabelled sample.
    public mutating func single(_ name: String, _ kind: Kind, help: String, _ value: Double) {
        family(name, kind, help: help)
        sample(name, value)
    }

    public mutating func histogram(_ name: String, help: String, _ snapshot: LatencyHistogram.Snapshot) {
        family(name, .histogram, help: help)
        var cumulative: UInt64 = 0
        for (bound, count) in zip(snapshot.upperBoundsSeconds, snapshot.counts) {
            cumulative += count
            sample(name + "_bucket", ["le": Self.format(bound)], cumulative)
        }
        sample(name + "_bucket", ["le": "+Inf"], snapshot.count)
        sample(name + "_sum", snapshot.sumSeconds)
        sample(name + "_count", snapshot.count)
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Label values escape backslash, double quote and newline; HELP text only the first and last.
    static func escapeLabel(_ value: String) -> String { escape(value, quotes: true) }

    static func escapeHelp(_ value: String) -> String { escape(value, quotes: false) }

    private static func escape(_ value: String, quotes: Bool) -> String {
        var out = ""
        for ch in value {
            switch ch {
            case "\\": out += "\\\\"
            case "\"" where quotes: out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }
}
