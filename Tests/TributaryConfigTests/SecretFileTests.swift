import Foundation
import Testing
import TributaryConfig
import TributaryTesting

/// The one way every secret file is read: how each kind is trimmed, what is refused, and that
/// no error shows the contents.
@Suite("secret files")
struct SecretFileTests {
    @Test func eachKindIsTrimmedItsOwnWay() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let password = try dir.writeSecret("password", " s3cret pass \r\n")
        #expect(try SecretFile.read(password, as: .line) == " s3cret pass ", "a password keeps its spaces, loses one line end")
        let token = try dir.writeSecret("token", "\n  0123456789abcdef \n\n")
        #expect(try SecretFile.read(token, as: .token(minLength: 16)) == "0123456789abcdef")
        let key = try dir.writeSecret("key", "0123456789abcdef\r\n\n")
        #expect(try SecretFile.readBytes(key, as: .key(minLength: 16)) == Array("0123456789abcdef".utf8))
        let lines = try dir.writeSecret("tokens", "gw-1 a\ngw-2 b\n")
        #expect(try SecretFile.read(lines, as: .lines) == "gw-1 a\ngw-2 b\n")
    }

    @Test func aLinkIsFollowedAndItsTargetCounts() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let target = try dir.writeSecret("mounted", "via-link\n")
        try FileManager.default.createSymbolicLink(atPath: dir.file("link"), withDestinationPath: target)
        #expect(try SecretFile.read(dir.file("link"), as: .line) == "via-link")
        chmod(target, 0o644)
        #expect(throws: SecretFile.Problem.self) { try SecretFile.read(dir.file("link"), as: .line) }
    }

    @Test func whatIsRefusedAndWhy() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let secretWords = "hunter2-secret"
        func problem(_ path: String, _ content: SecretFile.Content) -> String {
            do {
                _ = try SecretFile.read(path, as: content)
                return "read"
            } catch {
                return error.description
            }
        }
        try (secretWords + "\n").write(toFile: dir.file("open"), atomically: true, encoding: .utf8)
        chmod(dir.file("open"), 0o604)
        let cases: [(path: String, content: SecretFile.Content, says: String)] = [
            (dir.file("missing"), .line, "does not exist"),
            (dir.path, .line, "is not a regular file"),
            (dir.file("open"), .line, "readable or writable by other users (mode 604): chmod 600"),
            (try dir.writeSecret("empty", "\n"), .line, "is empty"),
            (try dir.writeSecret("two", secretWords + "\nmore\n"), .line, "must hold one line"),
            (try dir.writeSecret("short", "short\n"), .token(minLength: 16), "one token of at least 16 characters"),
            (try dir.writeSecret("spaced", "0123456789 abcdef\n"), .token(minLength: 16), "one token"),
            (try dir.writeSecret("shortkey", "0123\n"), .key(minLength: 16), "holds 4 bytes; use at least 16"),
        ]
        for c in cases {
            let said = problem(c.path, c.content)
            #expect(said.contains(c.says) && said.contains(c.path), "\(c.path): \(said)")
            #expect(!said.contains(secretWords), "an error never shows the contents: \(said)")
        }
        // A group may read it (a service group); other users may not.
        chmod(dir.file("open"), 0o640)
        #expect(try SecretFile.read(dir.file("open"), as: .line) == secretWords)
    }

    @Test func aConfigKeyNamesItselfAndTheFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try "x\n".write(toFile: dir.file("pw"), atomically: true, encoding: .utf8)
        let section = try ConfigSection(yaml: "password_file: \(dir.file("pw"))\n", file: "/etc/tributary/agent.yaml")
        #expect {
            _ = try section.secret("password_file", .line)
        } throws: { error in
            let config = error as? ConfigError
            return config?.key == "password_file" && config?.file == "/etc/tributary/agent.yaml" && "\(error)".contains("chmod 600")
        }
    }
}
