/// An MQTT subscription filter (`site/+/temp`, `devices/#`) and whether a topic matches it.
public struct TopicFilter: Sendable, Hashable, CustomStringConvertible {
    public let description: String
    private let levels: [Substring]

    public init(_ filter: String) {
        description = filter
        levels = filter.split(separator: "/", omittingEmptySubsequences: false)
    }

    public func matches(_ topic: String) -> Bool {
        // Per MQTT, wildcards at the first level do not match topics starting with '$'.
        if topic.utf8.first == UInt8(ascii: "$"), let first = levels.first, first == "+" || first == "#" { return false }
        // Walks the topic's levels in place: no array of them per message (this runs for every
        // message the agent receives).
        var levelsOfTopic = TopicLevels(topic)
        for level in levels {
            if level == "#" { return true }
            guard let part = levelsOfTopic.next() else { return false }
            if level != "+" && !level.utf8.elementsEqual(topic.utf8[part]) { return false }
        }
        return levelsOfTopic.next() == nil
    }
}

/// The levels of a topic, as ranges of its UTF-8 view, one after another (`a//b` has an empty
/// middle level; `a/` ends with one).
struct TopicLevels: IteratorProtocol {
    private let utf8: String.UTF8View
    private var start: String.Index?

    init(_ topic: String) {
        utf8 = topic.utf8
        start = utf8.startIndex
    }

    mutating func next() -> Range<String.Index>? {
        guard let from = start else { return nil }
        if let slash = utf8[from...].firstIndex(of: UInt8(ascii: "/")) {
            start = utf8.index(after: slash)
            return from..<slash
        }
        start = nil
        return from..<utf8.endIndex
    }
}
