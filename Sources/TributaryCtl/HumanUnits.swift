/// Numbers and durations the way operators read them: 12.3k, 4.1M, 4m10s, 2h03m.
public enum HumanUnits {
    public static func count<T: BinaryInteger>(_ value: T) -> String {
        let v = Double(value)
        switch abs(v) {
        case ..<1000: return String(value)
        case ..<999_950: return format(v / 1e3) + "k"
        case ..<999_950_000: return format(v / 1e6) + "M"
        default: return format(v / 1e9) + "G"
        }
    }

    public static func bytes<T: BinaryInteger>(_ value: T) -> String {
        let v = Double(value)
        switch v {
        case ..<1024: return "\(value)B"
        case ..<(1024 * 1024): return format(v / 1024) + "KiB"
        case ..<(1024 * 1024 * 1024): return format(v / 1024 / 1024) + "MiB"
        default: return format(v / 1024 / 1024 / 1024) + "GiB"
        }
    }

    public static func rate(_ perSecond: Double) -> String {
        guard perSecond.isFinite, perSecond >= 0 else { return "?/s" }
        return perSecond < 1000 ? format(perSecond) + "/s" : count(Int64(min(perSecond, 9e18))) + "/s"
    }

    public static func duration(ms: Int64) -> String {
        if ms < 1000 { return "\(max(ms, 0))ms" }
        let s = ms / 1000
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(pad(s % 60))s" }
        if s < 86_400 { return "\(s / 3600)h\(pad(s / 60 % 60))m" }
        return "\(s / 86_400)d\(pad(s / 3600 % 24))h"
    }

    /// A duration that may be negative, with its sign: +1.2s, -350ms, 0ms.
    public static func signedDuration(ms: Int64) -> String {
        guard ms != 0 else { return "0ms" }
        let sign = ms > 0 ? "+" : "-", size = ms == .min ? .max : abs(ms)
        // Skew is read to the tenth of a second: 2.4 s matters, "2s" would hide it.
        if size >= 1000 && size < 60_000 { return sign + format1(Double(size) / 1000) + "s" }
        return sign + duration(ms: size)
    }

    private static func pad(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }

    private static func format(_ v: Double) -> String {
        let rounded = (v * 10).rounded() / 10
        return rounded == rounded.rounded() && abs(rounded) >= 100 ? String(Int64(rounded)) : String(format1(rounded))
    }

    private static func format1(_ v: Double) -> String {
        let tenths = Int64((abs(v) * 10).rounded())
        return (v < 0 ? "-" : "") + "\(tenths / 10).\(tenths % 10)"
    }
}
