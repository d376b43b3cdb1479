import Foundation
import TributaryCore
import Yams

/// A mapping in a YAML configuration file, read key by key.
///
/// Every key a program reads is recorded; `checkNoUnknownKeys()` then rejects the rest, so a
/// misspelt key is an error that names it instead of a setting silently ignored.
public final class ConfigSection {
    public let file: String?
    public let path: String
    private let mapping: [(String, Node)]
    private var readKeys: Set<String> = []
    private var children: [ConfigSection] = []

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
            throw ConfigError(file: file, key: "", message: "not valid YAML: \(error)")
        }
        guard let node else {
            self.init(mapping: [], file: file, path: "")
            return
        }
        guard let mapping = node.mapping else {
            throw ConfigError(file: file, key: "", message: "the top level must be a mapping of keys to values")
        }
        try self.init(node: mapping, file: file, path: "")
    }

    private convenience init(node: Node.Mapping, file: String?, path: String) throws(ConfigError) {
        var pairs: [(String, Node)] = []
        for (key, value) in node {
            guard let name = key.scalar?.string else {
                throw ConfigError(file: file, key: path, message: "keys must be plain strings")
            }
            pairs.append((name, value))
        }
        self.init(mapping: pairs, file: file, path: path)
    }

    private init(mapping: [(String, Node)], file: String?, path: String) {
        self.mapping = mapping
        self.file = file
        self.path = path
    }

    private func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, key: keyPath(key), message: message)
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
    /// first connection.
    public func readableFile(_ key: String) throws(ConfigError) -> String? {
        guard let path = try string(key) else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw error(key, "\(path) does not exist")
        }
        guard !isDirectory.boolValue else { throw error(key, "\(path) is a directory; a file is needed") }
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
        let child = try ConfigSection(node: mapping, file: file, path: keyPath(key))
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
                throw ConfigError(file: file, key: "\(keyPath(key))[\(index)]", message: "expected a string, found a \(element.kindName)")
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
                throw ConfigError(file: file, key: elementPath, message: "expected a mapping, found a \(element.kindName)")
            }
            let child = try ConfigSection(node: mapping, file: file, path: elementPath)
            children.append(child)
            result.append(child)
        }
        return result
    }

    /// Rejects keys that nothing read, here and in every section read from here.
    public func checkNoUnknownKeys() throws(ConfigError) {
        for (key, _) in mapping where !readKeys.contains(key) {
            let known = readKeys.sorted().joined(separator: ", ")
            throw error(key, "unknown key (known keys here: \(known))")
        }
        for child in children { try child.checkNoUnknownKeys() }
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
