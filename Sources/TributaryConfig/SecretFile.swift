import Foundation

/// Every secret read from a file is read here, one way: the MQTT password, the gateway's token,
/// the pseudonym key (agent); the operator token, the gateway token file, the ClickHouse
/// password (aggregator); tributaryctl's and tributary-sim's token and password files.
///
/// - Symbolic links are followed to their target (secret mounts, as Kubernetes or Vault make
///   them, are links), and the target must be a regular file.
/// - The target must not be open to other users: any `o` bit in its mode is refused, since a
///   secret every local user can read is no secret (a group bit is allowed, for a service group).
/// - Errors name the file and say what to do; they never show the contents.
public enum SecretFile {
    /// What the file holds, and so how it is trimmed and checked.
    public enum Content: Sendable {
        /// One line, as it is (a password may hold spaces): one trailing newline (`\n` or `\r\n`)
        /// is dropped; it must not be empty nor hold another line break.
        case line
        /// One token: whitespace around it is dropped; at least `minLength` characters, none of
        /// them whitespace.
        case token(minLength: Int)
        /// A key's bytes: trailing `\r` and `\n` are dropped; at least `minLength` bytes.
        case key(minLength: Int)
        /// Several lines, as they are (a gateway token file, which its own parser checks).
        case lines
    }

    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The secret in `path`, as text.
    public static func read(_ path: String, as content: Content) throws(Problem) -> String {
        let bytes = try readBytes(path, as: content)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw Problem("\(path) is not UTF-8 text")
        }
        return text
    }

    /// The file's bytes, or why they cannot be read, in the operator's words: a service user
    /// that may not read its secret is told so, with the user and what to change.
    private static func contents(of path: String) throws(Problem) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            if code == EACCES {
                let user = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
                throw Problem("cannot read \(path): \(reason) for user \(user): make it readable by that user, e.g. chown root:GROUP and chmod 640 with the user in GROUP (or chown it to the user, chmod 600)")
            }
            throw Problem("cannot read \(path): \(reason)")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return bytes }
            guard n > 0 else {
                if errno == EINTR { continue }
                throw Problem("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            bytes += chunk[0..<n]
            // A secret is small; a huge file here is a mistake (a log, a device), not a token.
            guard bytes.count <= 1 << 20 else { throw Problem("\(path) is larger than 1 MiB: not a secret file") }
        }
    }

    /// What `stat` says of `path`, a link followed, when it is a regular file; otherwise why it
    /// is not, in the operator's words. Secrets and the certificate and key files
    /// (`ConfigSection.readableFile`) are checked here: reading a FIFO waits for a writer, so a
    /// FIFO named as a certificate hung a reload with no word (attack round 14).
    public static func regularFile(_ path: String) throws(Problem) -> stat {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Problem(errno == EACCES ? "\(path) cannot be reached (permission denied for this user)" : "\(path) does not exist")
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return info
        case S_IFDIR: throw Problem("\(path) is not a regular file: it is a directory")
        case S_IFIFO: throw Problem("\(path) is not a regular file: it is a FIFO (reading it would wait for a writer)")
        default: throw Problem("\(path) is not a regular file: it is a device or a socket")
        }
    }

    /// The secret in `path`, as bytes (a key need not be text).
    public static func readBytes(_ path: String, as content: Content) throws(Problem) -> [UInt8] {
        let info = try regularFile(path)
        guard info.st_mode & 0o007 == 0 else {
            throw Problem("\(path) is readable or writable by other users (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 it (640 for a group that needs it)")
        }
        var bytes = try contents(of: path)
        let newline = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")
        switch content {
        case .line:
            if bytes.last == newline {
                bytes.removeLast()
                if bytes.last == carriageReturn { bytes.removeLast() }
            }
            guard !bytes.isEmpty else { throw Problem("\(path) is empty") }
            guard !bytes.contains(newline) && !bytes.contains(carriageReturn) else {
                throw Problem("\(path) must hold one line; it holds more")
            }
        case .token(let minLength):
            let isSpace: (UInt8) -> Bool = { $0 == 0x20 || (0x09...0x0D).contains($0) }
            while let first = bytes.first, isSpace(first) { bytes.removeFirst() }
            while let last = bytes.last, isSpace(last) { bytes.removeLast() }
            guard bytes.count >= minLength, !bytes.contains(where: isSpace) else {
                throw Problem("\(path) must hold one token of at least \(minLength) characters")
            }
        case .key(let minLength):
            while let last = bytes.last, last == newline || last == carriageReturn { bytes.removeLast() }
            guard bytes.count >= minLength else {
                throw Problem("\(path) holds \(bytes.count) bytes; use at least \(minLength) (e.g. openssl rand -hex 32)")
            }
        case .lines:
            break
        }
        return bytes
    }
}

extension ConfigSection {
    /// The secret in the file named by `key`, nil when the key is absent; a problem is an error
    /// naming the key and the config file.
    public func secret(_ key: String, _ content: SecretFile.Content) throws(ConfigError) -> String? {
        guard let path = try string(key) else { return nil }
        do {
            return try SecretFile.read(path, as: content)
        } catch {
            throw self.error(key, error.description)
        }
    }

    /// As `secret`, as bytes.
    public func secretBytes(_ key: String, _ content: SecretFile.Content) throws(ConfigError) -> [UInt8]? {
        guard let path = try string(key) else { return nil }
        do {
            return try SecretFile.readBytes(path, as: content)
        } catch {
            throw self.error(key, error.description)
        }
    }
}
