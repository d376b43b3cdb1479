import CMosquitto

/// A failed libmosquitto call, with the broker and topic involved.
public struct MQTTError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let operation: String
    public let broker: String
    public let topic: String?
    /// What went wrong in our words, when libmosquitto's code alone says too little.
    public let detail: String?
    public let fileID: String
    public let line: Int

    init(code: Int32, operation: String, broker: String, topic: String? = nil, detail: String? = nil,
         fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.operation = operation
        self.broker = broker
        self.topic = topic
        self.detail = detail
        self.fileID = fileID
        self.line = line
    }

    public var description: String {
        var text = "MQTT \(operation) failed for broker \(broker)"
        if let topic { text += " (topic '\(topic)')" }
        return text + ": " + (detail ?? String(cString: mosquitto_strerror(code)))
    }
}
