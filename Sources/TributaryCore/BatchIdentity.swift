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

    /// Within the bounds a stored identity has (`ReadingLimits`): only such an identity is
    /// echoed in an answer or kept in the registry; a client's 1 MB epoch is not sent back.
    public var isWithinBounds: Bool {
        !gatewayID.isEmpty && gatewayID.utf8.count <= ReadingLimits.maxGatewayIDBytes
            && !epoch.isEmpty && epoch.utf8.count <= ReadingLimits.maxEpochBytes
    }
}
