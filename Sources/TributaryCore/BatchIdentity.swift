/// The identity a batch gets when it is sealed, unique for all time:
/// the gateway, the epoch of its buffer file, and a sequence number within that epoch.
public struct BatchIdentity: Sendable, Hashable, CustomStringConvertible {
    public var gatewayID: String
    public var epoch: String
    public var sequence: UInt64

    public init(gatewayID: String, epoch: String, sequence: UInt64) {
        self.gatewayID = gatewayID
        self.epoch = epoch
        self.sequence = sequence
    }

    public var description: String { "\(gatewayID)/\(epoch)/\(sequence)" }
}
