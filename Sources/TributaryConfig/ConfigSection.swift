import Foundation
import TributaryCore
import Yams

/// A mapping in a YAML configuration file, read key by key.
///
/// Every key a program reads is recorded; `checkNoUnknownKeys()` then rejects the rest, so a
/// misspelt key is an error that names it instead of a setting silently ignored.
///
/// A loader that can go on after a problem (another subscription, another section) wraps each
/// independent part in `collect`, so `--check-config` names every problem, not just the first.
public final class ConfigSection {
    public let file: String?
    public let path: String
    private let mapping: [(String, Node)]
    /// The line of each key of `mapping`.
    private let keyLines: [String: Int]
    private var readKeys: Set<String> = []
    private var children: [ConfigSection] = []
    /// The line of this mapping in the file (nil for an empty file).
    private let line: Int?
    /// The problems collected so far, shared by a root and every section read from it.
    private let problems: ProblemList
    /// A problem was found here: reading stopped part way, so keys not read are not "unknown".
    private var incomplete = false

    final class ProblemList {
        var list: [ConfigError] = []
    }

    /// The text of a configuration file, or "" when there is none (defaults only).
    public static func readFile(_ file: String?) throws(ConfigError) -> String {
        guard let file else { return "" }
        do {
            return try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: file, key: "", message: "cannot read the file: \(error.localizedDescription)")
        }
    }

    /// Parses a whole file's text; an empty file is an empty mapping.
    public convenience init(yaml: String, file: String?) throws(ConfigError) {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError(file: file, key: "", message: "not valid YAML: \(Self.withoutQuotedText(error))")
        }
        guard let node else {
            self.init(mapping: [], file: file, path: "", line: nil, problems: ProblemList())
            return
        }
        guard let mapping = node.mapping else {
            throw ConfigError(file: file, key: "", message: "the top level must be a mapping of keys to values", line: node.mark?.line)
        }
        try self.init(node: mapping, file: file, path: "", problems: ProblemList())
    }

    /// The YAML library's error without the text it quotes: its messages carry the lines around
    /// the problem, and for a duplicated key the whole mapping, so a secret written inline (a
    /// password) went to the log, to `--check-config`, and as the gateway's last error to the
    /// aggregator (attack round 14).
    static func withoutQuotedText(_ error: any Error) -> String {
        guard let error = error as? YamlError else { return "\(error)" }
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)" + (context.map { " (\($0.text) at line \($0.mark.line))" } ?? "")
        case let .duplicatedKeysInMapping(duplicates, context):
            return "the key(s) \(duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")) appear twice in the mapping at line \(context.mark.line)"
        case let .reader(problem, offset, _, _):
            return "\(problem) at byte \(offset.map(String.init) ?? "?")"
        default:
            return "\(error)"
        }
    }

    private convenience init(node: Node.Mapping, file: String?, path: String, problems: ProblemList) throws(ConfigError) {
        var pairs: [(String, Node)] = []
        var lines: [String: Int] = [:]
        for (key, value) in node {
            guard let name = key.scalar?.string else {
                throw ConfigError(file: file, key: path, message: "keys must be plain strings", line: key.mark?.line)
            }
            pairs.append((name, value))
            if lines[name] == nil, let line = key.mark?.line { lines[name] = line }
        }
        self.init(mapping: pairs, keyLines: lines, file: file, path: path, line: node.mark?.line, problems: problems)
    }

    private init(mapping: [(String, Node)], keyLines: [String: Int] = [:], file: String?, path: String, line: Int?, problems: ProblemList) {
        self.mapping = mapping
        self.keyLines = keyLines
        self.file = file
        self.path = path
        self.line = line
        self.problems = problems
    }

    private func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The line where `key` is written here, else where this section starts.
    public func line(of key: String) -> Int? {
        keyLines[key] ?? line
    }

    /// A problem with `key` of this section, naming the file and the line. Reading this section
    /// is taken to stop here: its keys not read yet are not reported unknown.
    public func error(_ key: String, _ message: String) -> ConfigError {
        incomplete = true
        return ConfigError(file: file, key: keyPath(key), message: message, line: line(of: key))
    }

    /// Runs one independent part of a loader: a problem in it is recorded (see `problems`) and
    /// nil returned, so the loader goes on to the next part.
    @discardableResult
    public func collect<T>(_ body: () throws(ConfigError) -> T) -> T? {
        do {
            return try body()
        } catch {
            record(error)
            return nil
        }
    }

    /// Records a problem found outside `collect`. The section the key belongs to is taken to
    /// have stopped reading there (its keys not read yet are not reported unknown).
    public func record(_ error: ConfigError) {
        markIncomplete(holding: error.key)
        if error.line == nil, error.file != nil, error.file == file, let line = lineOfKeyPath(error.key) {
            problems.list.append(ConfigError(file: error.file, key: error.key, message: error.message, line: line))
        } else {
            problems.list.append(error)
        }
    }

    private func markIncomplete(holding key: String) {
        let holds = path.isEmpty || key == path || key.hasPrefix(path + ".") || key.hasPrefix(path + "[")
        guard holds else { return }
        let child = children.first { key == $0.path || key.hasPrefix($0.path + ".") || key.hasPrefix($0.path + "[") }
        // The root is read key by key, each on its own; a section, in one go that a problem stops.
        if let child { child.markIncomplete(holding: key) } else if !path.isEmpty { incomplete = true }
    }

    /// Every problem recorded, here and in every section read from the same file.
    public var recordedProblems: [ConfigError] { problems.list }

    /// The line of a dotted key under this section (`aggregator.urls[1]` finds `aggregator`'s
    /// `urls`), for errors made without a section at hand.
    private func lineOfKeyPath(_ keyPath: String) -> Int? {
        let relative = path.isEmpty ? keyPath : keyPath.hasPrefix(path + ".") ? String(keyPath.dropFirst(path.count + 1)) : keyPath
        var parts = relative.split(separator: ".").map(String.init)
        guard !parts.isEmpty else { return line }
        func pairs(_ node: Node) -> [(String, Node, Int?)] {
            node.mapping.map { $0.compactMap { pair in pair.key.scalar.map { ($0.string, pair.value, pair.key.mark?.line) } } } ?? []
        }
        var nodes = mapping.map { ($0.0, $0.1, keyLines[$0.0]) }
        var found: Int? = line
        while !parts.isEmpty {
            let part = parts.removeFirst()
            let name = part.split(separator: "[").first.map(String.init) ?? part
            guard let (_, node, keyLine) = nodes.first(where: { $0.0 == name }) else { return found }
            found = keyLine ?? found
            if let index = part.split(separator: "[").dropFirst().first.flatMap({ Int($0.dropLast()) }),
               let sequence = node.sequence, index < sequence.count {
                let element = sequence[sequence.index(sequence.startIndex, offsetBy: index)]
                found = element.mark?.line ?? found
                nodes = pairs(element)
            } else {
                nodes = pairs(node)
            }
        }
        return found
    }

    private func node(_ key: String) -> Node? {
        readKeys.insert(key)
        guard let node = mapping.first(where: { $0.0 == key })?.1 else { return nil }
        if let scalar = node.scalar, scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
            return nil
        }
        return node
    }

    private func scalar(_ key: String, _ kind: String) throws(ConfigError) -> String? {
        guard let node = node(key) else { return nil }
        guard let scalar = node.scalar else { throw error(key, "expected \(kind), found a \(node.kindName)") }
        return scalar.string
    }

    public func string(_ key: String) throws(ConfigError) -> String? {
        try scalar(key, "a string")
    }

    public func int(_ key: String, range: ClosedRange<Int>? = nil) throws(ConfigError) -> Int? {
        guard let text = try scalar(key, "an integer") else { return nil }
        guard let value = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw error(key, "expected an integer, found '\(text)'")
        }
        if let range, !range.contains(value) {
            throw error(key, "\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// A size in bytes: a plain integer or one with a unit, e.g. `512MiB`, `2GB`, `64k`.
    public func bytes(_ key: String) throws(ConfigError) -> Int64? {
        guard let text = try scalar(key, "a size in bytes") else { return nil }
        guard let value = Units.bytes(text) else {
            throw error(key, "expected a size such as 1073741824, 512MiB or 2GB, found '\(text)'")
        }
        return value
    }

    /// A size in bytes, as `bytes`, within `range`: the limits' keys, which took plain integers
    /// only while the agent's sizes took units.
    public func bytes(_ key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let value = try bytes(key) else { return nil }
        guard value >= Int64(range.lowerBound) && value <= Int64(range.upperBound) else {
            throw error(key, "\(value) bytes is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return Int(value)
    }

    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let text = try scalar(key, "true or false") else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(key, "expected true or false, found '\(text)'")
        }
    }

    /// A path to a file this process can read now (certificates, keys, CA bundles): a file
    /// that is missing or unreadable is an error naming the key, found at start, not at the
    /// first connection. It must be a regular file (a link to one is fine), as a secret must
    /// (`SecretFile.regularFile`).
    public func readableFile(_ key: String) throws(ConfigError) -> String? {
        guard let path = try string(key) else { return nil }
        do {
            _ = try SecretFile.regularFile(path)
        } catch {
            throw self.error(key, error.description)
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw error(key, "cannot read \(path) (permission denied for this user?)")
        }
        return path
    }

    /// A client's `tls:` section: `ca_file` (the CAs to verify the server against; nil: the
    /// system's) and a client certificate, `cert_file` with its `key_file`, both or neither.
    public func clientTLSFiles() throws(ConfigError) -> ClientTLSFiles {
        let files = ClientTLSFiles(caFile: try readableFile("ca_file"), certificateFile: try readableFile("cert_file"),
                                   keyFile: try readableFile("key_file"))
        if files.certificateFile != nil && files.keyFile == nil {
            throw error("key_file", "cert_file is set: a client certificate needs its key_file too")
        }
        if files.keyFile != nil && files.certificateFile == nil {
            throw error("cert_file", "key_file is set: a client certificate needs its cert_file too")
        }
        return files
    }

    /// A value from a fixed set, e.g. a format name; the error lists the choices.
    public func choice<T: RawRepresentable & CaseIterable>(_ key: String, of: T.Type) throws(ConfigError) -> T? where T.RawValue == String {
        guard let text = try string(key) else { return nil }
        guard let value = T(rawValue: text) else {
            let choices = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(key, "'\(text)' is not one of: \(choices)")
        }
        return value
    }

    public func section(_ key: String) throws(ConfigError) -> ConfigSection? {
        guard let node = node(key) else { return nil }
        guard let mapping = node.mapping else { throw error(key, "expected a mapping, found a \(node.kindName)") }
        let child = try ConfigSection(node: mapping, file: file, path: keyPath(key), problems: problems)
        children.append(child)
        return child
    }

    /// A list of strings; each element's error names its index, e.g. `sink_allow_list[1]`.
    public func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let node = node(key) else { return nil }
        guard let sequence = node.sequence else { throw error(key, "expected a list, found a \(node.kindName)") }
        var result: [String] = []
        for (index, element) in sequence.enumerated() {
            guard let scalar = element.scalar else {
                incomplete = true
                throw ConfigError(file: file, key: "\(keyPath(key))[\(index)]", message: "expected a string, found a \(element.kindName)",
                                  line: element.mark?.line)
            }
            result.append(scalar.string)
        }
        return result
    }

    public func sections(_ key: String) throws(ConfigError) -> [ConfigSection]? {
        guard let node = node(key) else { return nil }
        guard let sequence = node.sequence else { throw error(key, "expected a list, found a \(node.kindName)") }
        var result: [ConfigSection] = []
        for (index, element) in sequence.enumerated() {
            let elementPath = "\(keyPath(key))[\(index)]"
            guard let mapping = element.mapping else {
                incomplete = true
                throw ConfigError(file: file, key: elementPath, message: "expected a mapping, found a \(element.kindName)", line: element.mark?.line)
            }
            let child = try ConfigSection(node: mapping, file: file, path: elementPath, problems: problems)
            children.append(child)
            result.append(child)
        }
        return result
    }

    /// Rejects keys that nothing read, here and in every section read from here.
    public func checkNoUnknownKeys() throws(ConfigError) {
        if let first = unknownKeys().first { throw first }
    }

    /// Records every key that nothing read, here and in every section read from here; a section
    /// where a problem stopped the reading is skipped (its keys after the problem were not read).
    public func collectUnknownKeys() {
        for problem in unknownKeys() { problems.list.append(problem) }
    }

    private func unknownKeys() -> [ConfigError] {
        var found: [ConfigError] = []
        if !incomplete {
            for (key, _) in mapping where !readKeys.contains(key) {
                let known = readKeys.sorted().joined(separator: ", ")
                found.append(ConfigError(file: file, key: keyPath(key), message: "unknown key (known keys here: \(known))", line: keyLines[key]))
            }
        }
        for child in children { found += child.unknownKeys() }
        return found
    }
}

extension Node {
    var kindName: String {
        switch self {
        case .scalar: "scalar"
        case .mapping: "mapping"
        case .sequence: "list"
        case .alias: "alias"
        }
    }
}
