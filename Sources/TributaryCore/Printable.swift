/// Text that came from a gateway, made safe to store and to print: control characters (C0, DEL,
/// C1) would otherwise let anyone who can post a status write escape sequences into an
/// operator's terminal.
public enum Printable {
    /// Control characters become `?`; at most `maxLength` characters are kept.
    public static func clean(_ text: String, maxLength: Int = 1024) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(maxLength) {
            out.unicodeScalars.append(isControl(scalar) ? "?" : scalar)
        }
        return out
    }

    /// A whole rendering: line breaks stay, every other control character becomes `?`.
    public static func lines(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            out.unicodeScalars.append(scalar == "\n" || !isControl(scalar) ? scalar : "?")
        }
        return out
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}

extension Sequence {
    /// A sum that stops at the largest value instead of trapping.
    public func saturatingSum(_ value: (Element) -> UInt64) -> UInt64 {
        reduce(UInt64(0)) { total, element in
            let (sum, overflow) = total.addingReportingOverflow(value(element))
            return overflow ? .max : sum
        }
    }
}

extension Int64 {
    /// `self - other`, held at the bounds instead of trapping.
    public func saturatingMinus(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other < 0 ? .max : .min) : difference
    }
}
