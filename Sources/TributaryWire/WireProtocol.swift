/// Names shared by the agent and the aggregator for the HTTP side of the wire contract.
public enum WireProtocol {
    public static let batchesPath = "/v1/batches"
    public static let fleetPath = "/v1/fleet"
    /// `GET` with a gateway id appended: one gateway and its recent sync history.
    public static let gatewaysPath = "/v1/gateways"
    public static let protobufContentType = "application/x-protobuf"
    /// Sent by the agent; lets a future aggregator speak older versions.
    public static let versionHeader = "X-Tributary-Protocol"
    public static let version = "1"
    /// Sent by the agent: the gateway it speaks for. Not a credential (the token or certificate
    /// proves who it is); it lets the aggregator tell an operator which gateway a request it
    /// refused before reading the body said it came from.
    public static let gatewayHeader = "X-Tributary-Gateway"
}
