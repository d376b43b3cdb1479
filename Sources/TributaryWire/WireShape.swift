/// A look at an encoded SyncRequest's shape before it is decoded: how many elements each
/// repeated field would become. Decoding builds Swift arrays and strings, and a small body can
/// ask for a lot of them: 60 MiB of one-byte varints in one packed field is 60 million Int64s
/// (480 MB), and 60 MiB of empty strings 30 million Strings. The counts come straight from the
/// bytes, so such a request is refused (413) before anything is allocated for it.
/// Malformed bytes are left for the decoder to reject: the scan only counts what it can read.
enum WireShape {
    struct TooMany: Error, Equatable {
        let field: String
        let count: Int
        let limit: Int
    }

    /// `maxElements`: the most any repeated field (series, strings, and each packed column of a
    /// series) may hold, and an eighth of what all series' columns may hold together: a batch
    /// holds at most that many readings, and each fills about three columns.
    static func check(_ bytes: [UInt8], maxElements: Int) throws(TooMany) {
        try bytes.withUnsafeBufferPointer { (all) throws(TooMany) in
            // SyncRequest: 1 batch. Counted across every occurrence: the decoder merges them.
            var strings = 0, series = 0, elements = 0
            let maxTotal = maxElements * 8
            for (number, _, value) in Fields(all) where number == 1 {
                guard case .bytes(let batch) = value else { continue }
                for (field, _, value) in Fields(batch) {
                    guard case .bytes(let inner) = value else { continue }
                    switch field {
                    case 3: strings += 1
                    case 4:
                        series += 1
                        // Per column: packed (one LEN field) or not (one field per element).
                        var columns = [Int](repeating: 0, count: 32)
                        for (column, wire, value) in Fields(inner) where column < columns.count {
                            let count = switch value {
                            case .scalar: 1
                            case .bytes(let packed) where wire == 2 && column != 1:
                                column == 12 ? packed.count / 8 : packed.reduce(0) { $0 + ($1 & 0x80 == 0 ? 1 : 0) }
                            case .bytes: 0
                            }
                            columns[column] += count
                            elements += count
                            guard columns[column] <= maxElements else {
                                throw TooMany(field: "series field \(column)", count: columns[column], limit: maxElements)
                            }
                            guard elements <= maxTotal else { throw TooMany(field: "series", count: elements, limit: maxTotal) }
                        }
                    default: break
                    }
                    // An honest reading can bring several strings of its own (sensor, metric,
                    // topic, unit, text value, labels): generous, but still bounded.
                    guard strings <= maxElements * 16 + 64 else { throw TooMany(field: "strings", count: strings, limit: maxElements * 16 + 64) }
                    guard series <= maxElements else { throw TooMany(field: "series", count: series, limit: maxElements) }
                }
            }
        }
    }

    enum Value {
        case scalar
        case bytes(UnsafeBufferPointer<UInt8>)
    }

    /// The top-level fields of one message, as (number, wire type, value); stops at the first
    /// byte it cannot read.
    struct Fields: Sequence, IteratorProtocol {
        let buffer: UnsafeBufferPointer<UInt8>
        var index = 0

        init(_ buffer: UnsafeBufferPointer<UInt8>) { self.buffer = buffer }

        mutating func next() -> (Int, Int, Value)? {
            guard let key = varint() else { return nil }
            let number = Int(truncatingIfNeeded: key >> 3), wire = Int(key & 7)
            switch wire {
            case 0:
                guard varint() != nil else { return nil }
                return (number, wire, .scalar)
            case 1, 5:
                let size = wire == 1 ? 8 : 4
                guard buffer.count - index >= size else { return nil }
                index += size
                return (number, wire, .scalar)
            case 2:
                guard let length = varint(), length <= UInt64(buffer.count - index) else { return nil }
                let start = index
                index += Int(length)
                return (number, wire, .bytes(UnsafeBufferPointer(rebasing: buffer[start..<index])))
            default:
                return nil
            }
        }

        private mutating func varint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while index < buffer.count, shift < 64 {
                let byte = buffer[index]
                index += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
            return nil
        }
    }
}
