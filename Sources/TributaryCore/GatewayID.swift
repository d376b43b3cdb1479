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
