import Foundation

/// The aggregators a sender delivers to: `url:` (one) or `urls:` (several, for failover) in a
/// section, or a flag given once or more, each possibly comma-separated. The agent's
/// `aggregator:` and a relay's `upstream:` read them the same way.
public enum ServiceURLs {
    /// Checks and normalizes the URLs: each http:// or https:// with a host, without a trailing
    /// slash, none twice. `key` is the setting's dotted name (e.g. `aggregator.urls`); `file`
    /// is nil when they came from a flag.
    public static func checked(_ texts: [String], key: String, file: String?) throws(ConfigError) -> [String] {
        guard !texts.isEmpty else { throw ConfigError(file: file, key: key, message: "the list is empty: give at least one http(s)://HOST:PORT") }
        var urls: [String] = []
        for (index, raw) in texts.enumerated() {
            let text = raw.trimmingCharacters(in: .whitespaces)
            let where_ = texts.count > 1 ? "\(key)[\(index)]" : key
            guard text.hasPrefix("http://") || text.hasPrefix("https://"), let parsed = URL(string: text), parsed.host != nil else {
                throw ConfigError(file: file, key: where_, message: "'\(text)' is not an http:// or https:// URL")
            }
            let url = text.hasSuffix("/") ? String(text.dropLast()) : text
            guard !urls.contains(url) else { throw ConfigError(file: file, key: where_, message: "\(url) is listed twice") }
            urls.append(url)
        }
        return urls
    }

    /// A flag's values (repeated, or comma-separated), or nil when it was not given.
    public static func splitFlag(_ values: [String]) -> [String]? {
        let parts = values.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
        return parts.isEmpty ? nil : parts
    }

    /// `url:` or `urls:` of `section` (not both), checked; nil when neither is set.
    public static func read(_ section: ConfigSection?, prefix: String) throws(ConfigError) -> [String]? {
        guard let section else { return nil }
        let one = try section.string("url")
        let many = try section.strings("urls")
        if one != nil && many != nil {
            throw section.error("urls", "give url (one) or urls (a list), not both")
        }
        if let one { return try checked([one], key: "\(prefix).url", file: section.file) }
        if let many { return try checked(many, key: "\(prefix).urls", file: section.file) }
        return nil
    }
}
