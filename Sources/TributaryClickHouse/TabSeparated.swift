/// ClickHouse's TabSeparated format, the text format every release since the first reads and
/// writes: one row per line, fields split by tabs, `\N` for NULL, and backslash escapes for
/// tab, newline, backslash and a few more inside strings.
public enum TabSeparated {
    /// Builds the body of an `INSERT ... FORMAT TabSeparated`.
    public struct Writer: Sendable {
        public private(set) var bytes: [UInt8] = []
        private var fieldsInRow = 0

        public init(reservingCapacity capacity: Int = 0) {
            bytes.reserveCapacity(capacity)
        }

        public mutating func field(_ text: String?) {
            separate()
            guard let text else { return bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")]) }
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case UInt8(ascii: "\t"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                case UInt8(ascii: "\n"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case UInt8(ascii: "\r"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "0")])
                default: bytes.append(byte)
                }
            }
        }

        public mutating func field(_ value: Int64?) {
            separate()
            guard let value else { return bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")]) }
            bytes.append(contentsOf: String(value).utf8)
        }

        public mutating func field(_ value: UInt64) {
            separate()
            bytes.append(contentsOf: String(value).utf8)
        }

        /// Swift prints the shortest text that reads back as the same Double (`1e-05`, `nan`,
        /// `inf`), which ClickHouse parses.
        public mutating func field(_ value: Double?) {
            separate()
            guard let value else { return bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")]) }
            bytes.append(contentsOf: value.description.utf8)
        }

        public mutating func endRow() {
            bytes.append(UInt8(ascii: "\n"))
            fieldsInRow = 0
        }

        private mutating func separate() {
            if fieldsInRow > 0 { bytes.append(UInt8(ascii: "\t")) }
            fieldsInRow += 1
        }
    }

    /// Splits a TabSeparated result into rows of fields, unescaped; NULL is nil.
    public static func parse(_ bytes: some Collection<UInt8>) -> [[String?]] {
        var rows: [[String?]] = []
        var row: [String?] = []
        var field: [UInt8] = []
        var isNull = false
        var escaped = false
        func endField() {
            row.append(isNull ? nil : String(decoding: field, as: UTF8.self))
            field = []
            isNull = false
        }
        for byte in bytes {
            if escaped {
                escaped = false
                switch byte {
                case UInt8(ascii: "t"): field.append(UInt8(ascii: "\t"))
                case UInt8(ascii: "n"): field.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "r"): field.append(UInt8(ascii: "\r"))
                case UInt8(ascii: "0"): field.append(0)
                case UInt8(ascii: "b"): field.append(8)
                case UInt8(ascii: "f"): field.append(12)
                case UInt8(ascii: "N") where field.isEmpty: isNull = true
                default: field.append(byte)
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\\"): escaped = true
            case UInt8(ascii: "\t"): endField()
            case UInt8(ascii: "\n"):
                endField()
                rows.append(row)
                row = []
            default: field.append(byte)
            }
        }
        if !field.isEmpty || !row.isEmpty || isNull {
            endField()
            rows.append(row)
        }
        return rows
    }
}
