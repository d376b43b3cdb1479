import Foundation

/// The zone a payload's ISO 8601 times are read in when they carry none: a subscription's
/// `time_zone`. Stock firmware sends such times (Tasmota's `Time` is the device's local wall
/// time, `2026-12-05T14:32:51`, unless SetOption52 adds the offset); without a zone they are
/// refused, since read in some unknown zone they would be stored hours off.
public struct PayloadTimeZone: Sendable, Equatable, CustomStringConvertible {
    private enum Kind: Sendable, Equatable {
        /// A fixed offset east of UTC.
        case offset(seconds: Int)
        /// A zone with rules (daylight saving time): an IANA name, or the gateway's own zone.
        case zone(TimeZone, name: String)
    }

    private let kind: Kind

    /// `+08:00`, `-05:30`, `+0800`, `Z` or `UTC`; an IANA name such as `Asia/Shanghai`; or
    /// `local`, the gateway's own zone (`TZ`, else `/etc/localtime`) when the agent starts.
    public init(_ text: String) throws(PayloadTimeZoneError) {
        let trimmed = text.trimmingASCIIWhitespace()
        if trimmed == "Z" || trimmed == "z" || trimmed.uppercased() == "UTC" {
            kind = .offset(seconds: 0)
        } else if let first = trimmed.first, first == "+" || first == "-" {
            let digits = trimmed.dropFirst().filter { $0 != ":" }
            guard digits.count == 4 || digits.count == 2, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let hours = Int(digits.prefix(2)), let minutes = Int(digits.count == 4 ? String(digits.suffix(2)) : "0"),
                  minutes < 60, hours * 60 + minutes <= 14 * 60 else {
                throw PayloadTimeZoneError(text: text, reason: "an offset is +HH:MM or -HH:MM, at most 14 hours")
            }
            kind = .offset(seconds: (first == "-" ? -1 : 1) * (hours * 3600 + minutes * 60))
        } else if trimmed == "local" {
            kind = .zone(TimeZone.current, name: "local (\(TimeZone.current.identifier))")
        } else if let zone = TimeZone(identifier: trimmed), trimmed.contains("/") {
            kind = .zone(zone, name: trimmed)
        } else {
            throw PayloadTimeZoneError(text: text, reason: "not an offset (+08:00), an IANA zone name (Asia/Shanghai) or local")
        }
    }

    public var description: String {
        switch kind {
        case .offset(let seconds):
            let sign = seconds < 0 ? "-" : "+"
            let m = abs(seconds) / 60
            return "\(sign)\(m / 60 < 10 ? "0" : "")\(m / 60):\(m % 60 < 10 ? "0" : "")\(m % 60)"
        case .zone(_, let name): return name
        }
    }

    /// Ms since the epoch of a wall time in this zone; `wallMs` is its fields read as if they
    /// were UTC. Where the zone's clocks go back, a wall time that happens twice is taken as
    /// one of the two; where they go forward, one that never happens is read with one of the
    /// two offsets (which, depends on the zone's rules).
    public func epochMs(ofWallTime wallMs: Int64) -> Int64 {
        switch kind {
        case .offset(let seconds):
            return wallMs - Int64(seconds) * 1000
        case .zone(let zone, _):
            func offsetMs(at ms: Int64) -> Int64 {
                Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(ms) / 1000))) * 1000
            }
            let guess = wallMs - offsetMs(at: wallMs)
            return wallMs - offsetMs(at: guess)
        }
    }

    public static func == (a: Self, b: Self) -> Bool { a.description == b.description }
}

public struct PayloadTimeZoneError: Error, Sendable, Equatable, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "'\(text.prefix(64))': \(reason)" }
}
