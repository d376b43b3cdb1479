/// Text that came from a gateway, made safe to store and to print: control characters (C0, DEL,
/// C1) would otherwise let anyone who can post a status write escape sequences into an
/// operator's terminal or start a forged line in a log, and bidirectional overrides (U+202E)
/// would make text read as something else.
public enum Printable {
    /// Control characters become `?`; at most `maxLength` characters are kept.
    public static func clean(_ text: String, maxLength: Int = 1024) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(maxLength) {
            out.unicodeScalars.append(isControl(scalar) ? "?" : scalar)
        }
        return out
    }

    /// Aligned columns, two spaces apart, the last one unpadded, as lines without trailing
    /// spaces. Each cell is made one clean line (`clean`), so a cell a gateway sent cannot start
    /// a fake row.
    public static func table(header: [String], rows: [[String]]) -> [String] {
        let rows = rows.map { $0.map { clean($0) } }
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        return ([header] + rows).map { cells in
            var line = cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            return line
        }
    }

    /// A whole rendering: line breaks stay, every other control character becomes `?`.
    public static func lines(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            out.unicodeScalars.append(scalar == "\n" || !isControl(scalar) ? scalar : "?")
        }
        return out
    }

    /// Every character `clean` would replace becomes a visible escape (`\u{1B}`, `\u{202E}`),
    /// and `\` becomes `\\`, so one log line is one line and shows what was sent.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { isControl($0) || $0 == "\\" }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar == "\\" {
                out += "\\\\"
            } else if isControl(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// C0 and C1 control characters, DEL, the line and paragraph separators, and the marks and
    /// overrides of bidirectional text.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F, 0x061C, 0x200E, 0x200F, 0x2028...0x202E, 0x2066...0x2069: true
        default: false
        }
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

    /// `self + other`, held at the bounds instead of trapping.
    public func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other < 0 ? .min : .max) : sum
    }
}
