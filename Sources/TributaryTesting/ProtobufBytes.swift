/// Protobuf wire format by hand, for bodies no encoder would write (bombs, odd shapes).
public enum ProtobufBytes {
    public static func varint(_ value: Int) -> [UInt8] {
        var value = UInt64(value), out: [UInt8] = []
        repeat {
            out.append(UInt8(value & 0x7F) | (value >= 0x80 ? 0x80 : 0))
            value >>= 7
        } while value > 0
        return out
    }

    /// A length-delimited field (wire type 2): a message, a string or a packed column.
    public static func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] {
        varint(number << 3 | 2) + varint(payload.count) + payload
    }
}
