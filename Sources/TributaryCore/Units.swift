/// Sizes and durations as people write them in configs, flags and scripts.
public enum Units {
    /// `1073741824`, `512MiB`, `2GB`, `64k` (k, M, G, T are powers of 1024; kB, MB... of 1000).
    public static func bytes(_ text: String) -> Int64? {
        let compact = text.filter { $0 != "_" && $0 != " " }
        let digits = compact.prefix { $0.isNumber }
        let multipliers: [String: Int64] = [
            "": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 1_000_000,
            "g": 1 << 30, "gib": 1 << 30, "gb": 1_000_000_000, "t": 1 << 40, "tib": 1 << 40, "tb": 1_000_000_000_000,
        ]
        guard let number = Int64(digits), let unit = multipliers[compact.dropFirst(digits.count).lowercased()] else { return nil }
        let (value, overflow) = number.multipliedReportingOverflow(by: unit)
        return overflow ? nil : value
    }

    /// `250ms`, `2s`, `1.5s`, `4m`, `1h`, and sums such as `4m10s` or `1h30m` (what
    /// `tributaryctl` prints); a bare number is seconds.
    public static func milliseconds(_ text: String) -> Int64? {
        var rest = Substring(text.filter { $0 != " " })
        guard !rest.isEmpty else { return nil }
        let multipliers: [Substring: Double] = ["": 1000, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000]
        var total = 0.0
        var first = true
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { !($0.isNumber || $0 == ".") }
            rest = rest.dropFirst(unit.count)
            // A bare number is seconds only on its own: "4m10" is a typo, not 250 s.
            guard let value = Double(number), value >= 0, let scale = multipliers[unit], first || !unit.isEmpty else { return nil }
            total += value * scale
            first = false
        }
        return total < 9e18 ? Int64(total.rounded()) : nil
    }
}
