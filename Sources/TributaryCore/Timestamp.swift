/// Parses payload timestamps into ms since the Unix epoch.
public enum Timestamp {
    /// A numeric epoch timestamp; the unit is inferred from its magnitude:
    /// below 1e11 seconds (until year 5138), below 1e14 milliseconds, below 1e17 microseconds,
    /// else nanoseconds.
    public static func epochMs(fromNumber value: Double) throws(PayloadError) -> Int64 {
        guard value.isFinite, value >= 0 else { throw .invalidTimestamp("\(value) is not a valid epoch time") }
        let ms: Double
        switch value {
        case ..<1e11: ms = value * 1000
        case ..<1e14: ms = value
        case ..<1e17: ms = value / 1000
        case ..<1e20: ms = value / 1_000_000
        default: throw .invalidTimestamp("\(value) is too large for an epoch time")
        }
        return Int64(ms.rounded(.down))
    }

    /// An integer epoch timestamp, exact for nanoseconds (doubles are not).
    public static func epochMs(fromInteger value: Int64) throws(PayloadError) -> Int64 {
        guard value >= 0 else { throw .invalidTimestamp("\(value) is negative") }
        switch value {
        case ..<100_000_000_000: return value * 1000
        case ..<100_000_000_000_000: return value
        case ..<100_000_000_000_000_000: return value / 1000
        default: return value / 1_000_000
        }
    }

    /// ISO 8601 / RFC 3339 with a zone: `2024-05-01T12:00:00Z`, `2024-05-01 12:00:00.250+02:00`.
    /// A time without a zone is read in `assumedZone` (a subscription's `time_zone`), and
    /// refused when there is none: it would be read in some unknown local time.
    public static func epochMs(fromISO8601 text: String, assumedZone: PayloadTimeZone? = nil) throws(PayloadError) -> Int64 {
        var scanner = Scanner(Array(text.utf8))
        guard let year = scanner.digits(4), scanner.skip("-"),
              let month = scanner.digits(2), scanner.skip("-"),
              let day = scanner.digits(2), scanner.skip("T") || scanner.skip("t") || scanner.skip(" "),
              let hour = scanner.digits(2), scanner.skip(":"),
              let minute = scanner.digits(2), scanner.skip(":"),
              let second = scanner.digits(2)
        else { throw .invalidTimestamp("'\(text.prefix(40))' is not ISO 8601 (YYYY-MM-DDTHH:MM:SS+zone)") }
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
            throw .invalidTimestamp("'\(text.prefix(40))' has a field out of range")
        }
        var fractionMs: Int64 = 0
        if scanner.skip(".") || scanner.skip(",") {
            var scale: Int64 = 100
            var count = 0
            while let d = scanner.digit() {
                fractionMs += Int64(d) * scale
                scale /= 10
                count += 1
            }
            guard count > 0 else { throw .invalidTimestamp("'\(text.prefix(40))' has an empty fraction") }
        }
        let offsetSeconds: Int64?
        if scanner.skip("Z") || scanner.skip("z") {
            offsetSeconds = 0
        } else if let sign = scanner.sign() {
            guard let oh = scanner.digits(2) else {
                throw .invalidTimestamp("'\(text.prefix(40))' has a malformed zone offset")
            }
            _ = scanner.skip(":")
            let om = scanner.digits(2) ?? 0
            offsetSeconds = sign * Int64(oh * 3600 + om * 60)
        } else if assumedZone != nil {
            offsetSeconds = nil
        } else {
            throw .invalidTimestamp("'\(text.prefix(40))' has no zone (add Z or an offset such as +08:00, or set the subscription's time_zone)")
        }
        guard scanner.atEnd else { throw .invalidTimestamp("'\(text.prefix(40))' has trailing characters") }
        let days = daysFromCivil(year: Int64(year), month: Int64(month), day: Int64(day))
        let wallMs = (days * 86_400 + Int64(hour * 3600 + minute * 60 + second)) * 1000 + fractionMs
        guard let offsetSeconds else { return assumedZone!.epochMs(ofWallTime: wallMs) }
        return wallMs - offsetSeconds * 1000
    }

    /// `2026-11-24T01:02:03.456Z` for ms since the epoch (proleptic Gregorian, UTC).
    public static func iso8601(ms: Int64) -> String {
        let seconds = ms.floorDiv(1000)
        let days = seconds.floorDiv(86_400)
        let secondOfDay = seconds - days * 86_400
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = z.floorDiv(146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ n: Int64, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay % 3600 / 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(ms - seconds * 1000, 3))Z"
    }

    /// Ms since the epoch of a `YYYY-MM-DD` day's start (UTC), or nil when it is not one.
    public static func epochMsOfDay(_ text: String) -> Int64? {
        let parts = text.split(separator: "-")
        guard parts.count == 3, let y = Int64(parts[0]), let m = Int64(parts[1]), let d = Int64(parts[2]),
              (1...12).contains(m), (1...31).contains(d) else { return nil }
        return daysFromCivil(year: y, month: m, day: d) * 86_400_000
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        var atEnd: Bool { index == bytes.count }

        mutating func skip(_ character: Character) -> Bool {
            guard index < bytes.count, bytes[index] == character.asciiValue! else { return false }
            index += 1
            return true
        }
        mutating func digit() -> Int? {
            guard index < bytes.count, (48...57).contains(bytes[index]) else { return nil }
            defer { index += 1 }
            return Int(bytes[index] - 48)
        }
        mutating func digits(_ count: Int) -> Int? {
            var value = 0
            for _ in 0..<count {
                guard let d = digit() else { return nil }
                value = value * 10 + d
            }
            return value
        }
        mutating func sign() -> Int64? {
            if skip("+") { return 1 }
            if skip("-") { return -1 }
            return nil
        }
    }
}

extension Int64 {
    /// Division rounding toward negative infinity (times before 1970 stay on the right day).
    func floorDiv(_ d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}
