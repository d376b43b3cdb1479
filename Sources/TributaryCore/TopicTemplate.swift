/// Maps MQTT topic levels to reading fields, e.g. `site/{gateway}/{sensor}/{metric}`.
///
/// Each level of the template is either a placeholder (`{gateway}`, `{sensor}`, `{metric}`),
/// which captures the topic level, or a literal, which the topic level must equal.
public struct TopicTemplate: Sendable, Hashable, CustomStringConvertible {
    public enum Field: String, Sendable, CaseIterable {
        case gateway, sensor, metric
    }

    enum Level: Sendable, Hashable {
        case literal(String)
        case capture(Field)
    }

    let levels: [Level]
    public let description: String

    /// The fields matched topics yield.
    public var captures: Set<Field> {
        Set(levels.compactMap { if case .capture(let f) = $0 { f } else { nil } })
    }

    public init(_ template: String) throws(TopicTemplateError) {
        description = template
        var seen = Set<Field>()
        var levels: [Level] = []
        for part in template.split(separator: "/", omittingEmptySubsequences: false) {
            if part.hasPrefix("{") && part.hasSuffix("}") {
                let name = String(part.dropFirst().dropLast())
                guard let field = Field(rawValue: name) else {
                    throw .unknownPlaceholder(template: template, placeholder: name)
                }
                guard seen.insert(field).inserted else {
                    throw .repeatedPlaceholder(template: template, placeholder: name)
                }
                levels.append(.capture(field))
            } else if part.contains("{") || part.contains("}") || part == "+" || part == "#" {
                throw .invalidLevel(template: template, level: String(part))
            } else {
                levels.append(.literal(String(part)))
            }
        }
        self.levels = levels
    }

    /// The captured fields of `topic`, or nil when the topic does not fit the template.
    public func match(_ topic: String) -> [Field: String]? {
        var parts = TopicLevels(topic)
        var fields: [Field: String] = [:]
        for level in levels {
            guard let part = parts.next() else { return nil }
            switch level {
            case .literal(let text):
                guard text.utf8.elementsEqual(topic.utf8[part]) else { return nil }
            case .capture(let field):
                guard !part.isEmpty else { return nil }
                fields[field] = String(topic[part])
            }
        }
        return parts.next() == nil ? fields : nil
    }
}

public enum TopicTemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownPlaceholder(template: String, placeholder: String)
    case repeatedPlaceholder(template: String, placeholder: String)
    case invalidLevel(template: String, level: String)

    public var description: String {
        switch self {
        case .unknownPlaceholder(let t, let p):
            "template '\(t)': unknown placeholder {\(p)}; use {gateway}, {sensor} or {metric}"
        case .repeatedPlaceholder(let t, let p):
            "template '\(t)': placeholder {\(p)} appears twice"
        case .invalidLevel(let t, let l):
            "template '\(t)': level '\(l)' is neither a literal nor a whole {placeholder}"
        }
    }
}
