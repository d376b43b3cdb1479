/// A look at an encoded SyncRequest's shape before it is decoded: how many elements its
/// repeated fields would become. Decoding builds Swift arrays and strings, and a small body can
/// ask for a lot of them: 60 MiB of one-byte varints in one packed field is 60 million Int64s
/// (480 MB), and 60 MiB of empty strings 30 million Strings. The counts come straight from the
/// bytes, so such a request is refused (413) before anything is allocated for it. Every bound
/// is one an honest batch of at most `maxElements` readings stays within, whatever its shape.
/// Malformed bytes are left for the decoder to reject: the scan only counts what it can read.
enum WireShape {
    struct TooMany: Error, Equatable {
        let field: String
        let count: Int
        let limit: Int
    }

    /// Series fields holding one element per reading of the series: time deltas, received
    /// offsets, and the value columns (doubles, integers, booleans, texts, decimal deltas).
    static let readingColumns = 10...16
    /// Series fields holding the series' labels (key and value indexes).
    static let labelColumns = 6...7
    /// Labels a batch may carry, per reading it may hold.
    static let labelsPerReading = 128

    static func check(_ bytes: [UInt8], maxElements: Int) throws(TooMany) {
        try bytes.withUnsafeBufferPointer { (all) throws(TooMany) in
            // SyncRequest: 1 batch. Counted across every occurrence: the decoder merges them.
            var strings = 0, series = 0, values = 0, labels = 0, texts = 0
            // A reading fills a time delta, a received offset and one value: three elements.
            let maxValues = maxElements * 3, maxLabels = maxElements * labelsPerReading
            for (number, _, value) in Fields(all) where number == 1 {
                guard case .bytes(let batch) = value else { continue }
                for (field, _, value) in Fields(batch) {
                    guard case .bytes(let inner) = value else { continue }
                    switch field {
                    case 3: strings += 1
                    case 4:
                        series += 1
                        guard series <= maxElements else { throw TooMany(field: "series", count: series, limit: maxElements) }
                        var perColumn = [Int](repeating: 0, count: readingColumns.upperBound + 1)
                        for (column, wire, value) in Fields(inner) where readingColumns.contains(column) || labelColumns.contains(column) {
                            // Packed (one length-delimited field) or not (one field per element).
                            let count = switch value {
                            case .scalar: 1
                            case .bytes(let packed) where wire == 2:
                                column == 12 ? packed.count / 8 : packed.reduce(0) { $0 + ($1 & 0x80 == 0 ? 1 : 0) }
                            case .bytes: 0
                            }
                            perColumn[column] += count
                            if labelColumns.contains(column) {
                                labels += count
                                guard labels <= maxLabels else { throw TooMany(field: "labels", count: labels, limit: maxLabels) }
                                continue
                            }
                            if column == 15 { texts += count }
                            values += count
                            // One series holds at most every reading of the batch.
                            guard perColumn[column] <= maxElements else {
                                throw TooMany(field: "series field \(column)", count: perColumn[column], limit: maxElements)
                            }
                            guard values <= maxValues else { throw TooMany(field: "reading columns", count: values, limit: maxValues) }
                        }
                    default: break
                    }
                    // Interned strings: each series' gateway, sensor, metric, topic and unit, its
                    // label keys and values, and text values. A crude early stop first.
                    guard strings <= maxElements * (5 + labelsPerReading + 1) + 64 else {
                        throw TooMany(field: "strings", count: strings, limit: maxElements * (5 + labelsPerReading + 1) + 64)
                    }
                }
            }
            let honest = 5 * series + labels + texts + 64
            guard strings <= honest else { throw TooMany(field: "strings", count: strings, limit: honest) }
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
