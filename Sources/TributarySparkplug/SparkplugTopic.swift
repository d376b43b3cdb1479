/// A topic in the Sparkplug B namespace: `spBv1.0/{group}/{type}/{edge node}[/{device}]`.
public struct SparkplugTopic: Sendable, Hashable, CustomStringConvertible {
    public enum MessageType: String, Sendable, CaseIterable {
        case nbirth = "NBIRTH", ndeath = "NDEATH", ndata = "NDATA", ncmd = "NCMD"
        case dbirth = "DBIRTH", ddeath = "DDEATH", ddata = "DDATA", dcmd = "DCMD"

        /// Device messages name a device after the edge node; node messages do not.
        public var isDeviceMessage: Bool {
            switch self {
            case .dbirth, .ddeath, .ddata, .dcmd: true
            case .nbirth, .ndeath, .ndata, .ncmd: false
            }
        }
    }

    public static let namespace = "spBv1.0"

    public var group: String
    public var type: MessageType
    public var edgeNode: String
    public var device: String?

    public init(group: String, type: MessageType, edgeNode: String, device: String? = nil) {
        self.group = group
        self.type = type
        self.edgeNode = edgeNode
        self.device = device
    }

    /// Nil for anything that is not a node or device message of the namespace (a host's
    /// `spBv1.0/STATE/...`, another namespace, a device message without its device).
    public init?(_ topic: String) {
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4 || parts.count == 5, parts[0] == Self.namespace,
              let type = MessageType(rawValue: String(parts[2])),
              parts.count == (type.isDeviceMessage ? 5 : 4),
              !parts[1].isEmpty, !parts[3].isEmpty, parts.count == 4 || !parts[4].isEmpty
        else { return nil }
        self.init(group: String(parts[1]), type: type, edgeNode: String(parts[3]),
                  device: parts.count == 5 ? String(parts[4]) : nil)
    }

    public var description: String {
        [Self.namespace, group, type.rawValue, edgeNode, device].compactMap { $0 }.joined(separator: "/")
    }

    /// The edge node this message belongs to.
    public var node: Node { Node(group: group, edgeNode: edgeNode) }

    /// An edge node: unique by its id within its group.
    public struct Node: Sendable, Hashable, Codable, CustomStringConvertible {
        public var group: String
        public var edgeNode: String

        public init(group: String, edgeNode: String) {
            self.group = group
            self.edgeNode = edgeNode
        }

        public var description: String { "\(group)/\(edgeNode)" }

        /// The sensor id readings from this node (or one of its devices) are stored under:
        /// `GROUP/EDGE_NODE[/DEVICE]`, unique as Sparkplug's own naming is.
        public func sensorID(device: String? = nil) -> String {
            device.map { "\(group)/\(edgeNode)/\($0)" } ?? "\(group)/\(edgeNode)"
        }

        /// Where a host application sends this node's commands, such as a rebirth request.
        public var commandTopic: String { SparkplugTopic(group: group, type: .ncmd, edgeNode: edgeNode).description }
    }
}
