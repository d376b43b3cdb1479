import Crypto


/// Provenance: each batch a gateway seals carries the SHA-256 of the one before it in its
/// epoch (`Batch.previous_digest`), so the aggregator can tell a batch that never arrived
/// (a gap) from one that arrived altered (a mismatch), whatever the transport or the sink did.
public enum BatchChain {
    /// SHA-256 of `encoded`, a Batch message as swift-protobuf writes it (fields in number
    /// order, no maps): the agent hashes the bytes it stores and sends, the aggregator the same
    /// message encoded again after decoding, and the two agree.
    public static func digest(of encoded: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: encoded))
    }

    /// Lowercase hex, for logs, the buffer's meta table and the fleet view.
    public static func hex(_ digest: some Collection<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(digest.count * 2)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The bytes of `hex`, or nil when it is not an even run of hex digits.
    public static func bytes(hex: String) -> [UInt8]? {
        let utf8 = Array(hex.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var result: [UInt8] = []
        result.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            result.append(high << 4 | low)
            index += 2
        }
        return result
    }
}
