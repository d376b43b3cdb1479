import Foundation

/// A ClickHouse release as `SELECT version()` names it: `18.16.1` (Debian 12's), `24.8.4.13`,
/// `26.9.2.1`. Releases are compared by their numbers, year first.
public struct ClickHouseVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The numbers, most significant first (at least two).
    public let numbers: [Int]

    public init(_ major: Int, _ minor: Int, _ rest: Int...) {
        numbers = [major, minor] + rest
    }

    /// Parses `version()`'s answer: numbers joined by dots, optionally followed by a suffix
    /// (`24.3.2.23-lts`, `23.8.1.1-altinitystable`), which is ignored. Nil when it does not start
    /// with at least `MAJOR.MINOR`.
    public init?(_ text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let leading = trimmed.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        var numbers: [Int] = []
        for part in leading.split(separator: ".", omittingEmptySubsequences: false) {
            guard let number = Int(part) else { break }
            numbers.append(number)
        }
        guard numbers.count >= 2 else { return nil }
        self.numbers = numbers
    }

    public var major: Int { numbers[0] }
    public var minor: Int { numbers[1] }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        for (a, b) in zip(lhs.numbers, rhs.numbers) where a != b { return a < b }
        return lhs.numbers.count < rhs.numbers.count
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.numbers == rhs.numbers
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(numbers) }

    public var description: String { numbers.map(String.init).joined(separator: ".") }
}
