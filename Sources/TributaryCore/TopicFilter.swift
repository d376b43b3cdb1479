/// An MQTT subscription filter (`site/+/temp`, `devices/#`) and whether a topic matches it.
public struct TopicFilter: Sendable, Hashable, CustomStringConvertible {
    public let description: String
    private let levels: [Substring]

    public init(_ filter: String) {
        description = filter
        levels = filter.split(separator: "/", omittingEmptySubsequences: false)
    }

    public func matches(_ topic: String) -> Bool {
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
        // Per MQTT, wildcards at the first level do not match topics starting with '$'.
        if topic.hasPrefix("$"), let first = levels.first, first == "+" || first == "#" { return false }
        for (index, level) in levels.enumerated() {
            if level == "#" { return true }
            guard index < parts.count else { return false }
            if level != "+" && level != parts[index] { return false }
        }
        return parts.count == levels.count
    }
}
