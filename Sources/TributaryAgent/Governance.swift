import TributaryCore
import TributaryCrypto

/// What a subscription's rules do to its readings in the agent, before they are buffered, so
/// the raw value never leaves the gateway: a classification tag carried to the sink, and field
/// rules that drop, mask or hash values by metric name.
public struct SubscriptionPolicy: Sendable, Equatable {
    /// `general`, `important` or `core`: the `classification` label on every reading. Nil: none.
    public var classification: Classification?
    /// In order; the first rule whose pattern matches a reading's metric applies.
    public var rules: [FieldRule] = []

    public init(classification: Classification? = nil, rules: [FieldRule] = []) {
        self.classification = classification
        self.rules = rules
    }

    public enum Classification: String, Sendable, CaseIterable {
        case general, important, core
    }

    public struct FieldRule: Sendable, Equatable {
        /// A metric name; `*` stands for any run of characters (dots included): `owner.*`, `*.phone`.
        public var match: String
        public var action: Action

        public enum Action: String, Sendable, CaseIterable {
            /// The reading is not kept (counted as withheld).
            case drop
            /// The value becomes the text `***`.
            case mask
            /// The value becomes its keyed pseudonym (`h:` and 32 hex digits), the same for the same value.
            case hash
        }

        public init(match: String, action: Action) {
            self.match = match
            self.action = action
        }

        func matches(_ metric: String) -> Bool { Self.glob(Array(match.utf8)[...], Array(metric.utf8)[...]) }

        /// `*` matches any run; everything else itself. Patterns are short: plain recursion.
        static func glob(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
            guard let first = pattern.first else { return text.isEmpty }
            if first == UInt8(ascii: "*") {
                let rest = pattern.dropFirst()
                if rest.isEmpty { return true }
                var suffix = text
                while true {
                    if glob(rest, suffix) { return true }
                    guard !suffix.isEmpty else { return false }
                    suffix = suffix.dropFirst()
                }
            }
            guard let head = text.first, head == first else { return false }
            return glob(pattern.dropFirst(), text.dropFirst())
        }
    }

    public static let maskedValue = "***"
    public static let classificationLabel = "classification"

    public var isEmpty: Bool { classification == nil && rules.isEmpty }

    /// Applies the rules to `readings[from...]` in place; returns how many were dropped.
    /// `pseudonymizer` is there whenever a rule hashes (the config makes sure of it).
    func apply(to readings: inout [Reading], from start: Int, pseudonymizer: Pseudonymizer?) -> Int {
        guard !isEmpty, start < readings.count else { return 0 }
        var kept = start
        for index in start..<readings.count {
            var reading = readings[index]
            switch rules.first(where: { $0.matches(reading.metric) })?.action {
            case .drop?: continue
            case .mask?: reading.value = .text(Self.maskedValue)
            case .hash?: reading.value = .text(pseudonymizer?.pseudonym(Self.canonical(reading.value)) ?? Self.maskedValue)
            case nil: break
            }
            if let classification { reading.labels[Self.classificationLabel] = classification.rawValue }
            readings[kept] = reading
            kept += 1
        }
        let dropped = readings.count - kept
        readings.removeLast(dropped)
        return dropped
    }

    /// The text a value is hashed as: the same value gives the same pseudonym whatever the
    /// payload's spelling (`21.50` and `21.5` are one number).
    static func canonical(_ value: ReadingValue) -> String {
        switch value {
        case .double(let d): "\(d)"
        case .integer(let i): "\(i)"
        case .boolean(let b): b ? "true" : "false"
        case .text(let t): t
        }
    }
}
