import Foundation

/// What `--check-config` found, as `nginx -t` says it: either what the program would run with,
/// secrets redacted, or every problem.
public struct ConfigCheckOutcome: Sendable {
    /// What the program would run with (empty when there are problems).
    public let summary: String
    /// Every problem, one a line, naming the key, the file and the line where known.
    public let problems: [String]
    public var ok: Bool { problems.isEmpty }

    public init(summary: String, problems: [String]) {
        self.summary = summary
        self.problems = problems
    }

    /// `data_dir` is checked, not made: a path that is there must be a directory.
    public static func dataDirectoryProblem(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { return nil }
        return "data_dir: \(path) is not a directory"
    }

    /// Ends the program: the summary on stdout and exit 0, or every problem on stderr, each
    /// after `program: `, with their count, and exit 1.
    public func finish(program: String, configFile: String?) -> Never {
        guard ok else {
            FileHandle.standardError.write(Data((problems.map { "\(program): \($0)" } + [
                "\(program): configuration \(configFile ?? "(defaults and flags)") has \(problems.count) problem(s)",
            ]).joined(separator: "\n").utf8 + [0x0A]))
            exit(1)
        }
        print(summary)
        exit(0)
    }
}

extension ConfigSection {
    /// Reads a whole file with `parse`, which records each problem on the root section and goes
    /// on where it can: the value, or every problem (a YAML that does not parse is one).
    public static func parseAll<T>(yaml: String, file: String?, _ parse: (ConfigSection) -> T?) throws(ConfigErrors) -> T {
        let root: ConfigSection
        do {
            root = try ConfigSection(yaml: yaml, file: file)
        } catch {
            throw ConfigErrors([error])
        }
        let value = parse(root)
        guard let value, root.recordedProblems.isEmpty else { throw ConfigErrors(root.recordedProblems) }
        return value
    }
}
