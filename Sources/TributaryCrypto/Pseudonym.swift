import Crypto

/// Keyed pseudonyms for the agent's `hash` rules: HMAC-SHA256 of a value under a key only the
/// gateways hold, so the same value always maps to the same pseudonym (joins and counts still
/// work downstream) while nobody without the key can test a guess against it.
public struct Pseudonymizer: Sendable {
    private let key: SymmetricKey

    /// `key`: at least 16 bytes (the config refuses shorter keys).
    public init(key: [UInt8]) {
        self.key = SymmetricKey(data: key)
    }

    /// `h:` and the first 128 bits of the HMAC in hex: short enough for a label, long enough
    /// that two values never share one in practice.
    public func pseudonym(_ value: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(value.utf8), using: key)
        return "h:" + BatchChain.hex(Array(mac).prefix(16))
    }
}
