/// Gateway ids: 1-128 characters of letters, digits, '-', '_' and '.'.
public enum GatewayID {
    /// Byte for byte. Swift's `==` takes canonically equivalent spellings as equal (`gw\u{00C5}`
    /// and `gw\u{212B}`), while the sinks, their ledgers and the registry compare bytes: a
    /// gateway could then write under an id that is not its own. Identifiers are never
    /// normalised; every comparison of them goes through here.
    public static func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

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

    public static func == (a: ExactString, b: ExactString) -> Bool { a.value.utf8.elementsEqual(b.value.utf8) }

    public func hash(into hasher: inout Hasher) {
        var value = value
        value.withUTF8 { bytes in
            hasher.combine(bytes.count)
            hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
        }
    }
}
