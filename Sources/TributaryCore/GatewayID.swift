#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Gateway ids: 1-128 characters of letters, digits, '-', '_' and '.'.
public enum GatewayID {
    /// Byte for byte. Swift's `==` takes canonically equivalent spellings as equal (`gw\u{00C5}`
    /// and `gw\u{212B}`), while the sinks, their ledgers and the registry compare bytes: a
    /// gateway could then write under an id that is not its own. Identifiers are never
    /// normalised; every comparison of them goes through here.
    public static func same(_ a: String, _ b: String) -> Bool { sameBytes(a, b) }

    public static func isValid(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }
    }
}

/// A string that equals another only byte for byte, and hashes its bytes: the key for any
/// dictionary or set of strings that came from a device. Swift's `String ==` takes canonically
/// equivalent strings as equal (`café` with `é` as one scalar, or as `e` and a combining
/// accent), so keyed by `String` two sensors merged into one and a text value was stored as its
/// twin's bytes; sinks and the wire compare bytes.
public struct ExactString: Hashable, Sendable {
    public let value: String

    public init(_ value: String) { self.value = value }

    public static func == (a: ExactString, b: ExactString) -> Bool { sameBytes(a.value, b.value) }

    public func hash(into hasher: inout Hasher) {
        var value = value
        value.withUTF8 { bytes in
            hasher.combine(bytes.count)
            hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
        }
    }
}

/// Whether two strings hold the same UTF-8 bytes. `utf8.elementsEqual` says the same, but walks
/// both views an index at a time: as the equality of a series key it was 14% of the aggregator's
/// CPU while writing to its SQLite sink. Lengths first; then strings that share their storage
/// (a decoded batch's readings share their series' strings) are equal without a look at it.
public func sameBytes(_ a: String, _ b: String) -> Bool {
    let a = a.utf8, b = b.utf8
    guard a.count == b.count else { return false }
    let contiguous = a.withContiguousStorageIfAvailable { a in
        b.withContiguousStorageIfAvailable { b in
            a.baseAddress == b.baseAddress || a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
        }
    }
    return (contiguous ?? nil) ?? a.elementsEqual(b)
}
