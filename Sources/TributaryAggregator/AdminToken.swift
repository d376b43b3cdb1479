import Foundation
import TributaryCrypto
import TributaryConfig

/// The operator tokens the admin API (`/v1/fleet`, `/v1/gateways/ID`) and `/metrics` require as
/// `Authorization: Bearer TOKEN`: the one token (`admin.token`, `admin.token_file`, or the
/// file made in the data directory), whose holder the audit log calls `operator`, and, with
/// `admin.tokens_file`, named ones, whose holder it calls by name. Batches are not behind them:
/// gateways do not hold them.
public struct AdminToken: Sendable {
    /// Nil when only named tokens open the API (`admin.tokens_file` without `token`/`token_file`).
    let value: [UInt8]?
    /// Where it came from, for the start-up log line; never the token itself.
    public let origin: String
    /// The named operators' tokens, reread when their file changes.
    public private(set) var named: NamedTokens?

    public init(value: String?, origin: String) {
        self.value = value.map { Array($0.utf8) }
        self.origin = origin
    }

    /// This token with the named operators' tokens beside it.
    public func adding(named: NamedTokens?) -> AdminToken {
        var token = self
        token.named = named
        return token
    }

    /// The unnamed token, for the named operators' file to refuse it.
    public var reserved: NamedTokens.Reserved? { value.map { NamedTokens.Reserved(token: $0, name: "admin.token / admin.token_file") } }

    /// Who holds the token a request showed.
    public enum Holder: Sendable, Equatable {
        /// The unnamed token (`admin.token`, `token_file`, or the generated one).
        case unnamed
        /// A name from `admin.tokens_file`.
        case named(String)

        /// As the audit log names them: `operator`, or `operator:NAME` (like gateways'
        /// `gateway:ID`), so no name can pass for the unnamed token's holder.
        public var auditActor: String {
            switch self {
            case .unnamed: "operator"
            case .named(let name): "operator:\(name)"
            }
        }
    }

    /// Reads the token; the default file is created with a fresh random token (mode 0600) when
    /// missing, so a new aggregator is never open to anyone who can reach its port.
    ///
    /// The default file, `<data_dir>/admin-token`, is one the aggregator made: one that is a
    /// symbolic link, not owned by this user, or open to other users is refused, since in a data
    /// directory others can write to it could have been planted, and its token would open the
    /// fleet to whoever planted it. A `token_file` the operator names may be a symbolic link (a
    /// mounted secret) but not readable by other users.
    public static func resolve(_ source: AggregatorConfig.AdminTokenSource) throws -> AdminToken {
        switch source {
        case .none:
            return AdminToken(value: nil, origin: "none (named tokens only)")
        case .inline(let token):
            return AdminToken(value: token, origin: "admin.token")
        case .file(let path, let createIfMissing):
            if createIfMissing, let created = try create(path) { return AdminToken(value: created, origin: "\(path) (created now)") }
            if createIfMissing { try checkDefaultFile(path) }
            do {
                return AdminToken(value: try SecretFile.read(path, as: .token(minLength: 16)), origin: path)
            } catch {
                throw AggregatorStartError(message: "admin.token_file: \(error.description)")
            }
        }
    }

    private static func checkDefaultFile(_ path: String) throws(AggregatorStartError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }  // reading it says why
        let remedy = "remove it and restart: the aggregator makes a new token (or name your own with admin.token_file)"
        if info.st_mode & S_IFMT == S_IFLNK {
            throw AggregatorStartError(message: "the operator token file \(path) is a symbolic link, not the file this aggregator made; \(remedy)")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw AggregatorStartError(message: "the operator token file \(path) is not a regular file; \(remedy)")
        }
        guard info.st_uid == geteuid() else {
            throw AggregatorStartError(message: "the operator token file \(path) belongs to uid \(info.st_uid), not to this aggregator's user (uid \(geteuid())); \(remedy)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw AggregatorStartError(message: "the operator token file \(path) has mode \(String(info.st_mode & 0o777, radix: 8)): others may read or change it; chmod 600 it, or \(remedy)")
        }
    }

    /// Creates the file with a random token, atomically: O_EXCL, so two aggregators starting at
    /// once cannot each write their own, and mode 0600 from the first byte. Returns the token; nil if the file exists.
    private static func create(_ path: String) throws -> String? {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        if fd < 0 {
            if errno == EEXIST { return nil }
            throw AggregatorStartError(message: "cannot create the operator token file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var generator = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        let bytes = Array((token + "\n").utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            unlink(path)
            throw AggregatorStartError(message: "cannot write the operator token file \(path): \(String(cString: strerror(errno)))")
        }
        return token
    }

    /// Who the `Authorization` header speaks for, or nil when nobody. Comparisons take the same
    /// time wherever they differ.
    public func holder(authorization: String?) -> Holder? {
        guard let offered = BearerToken.offered(in: authorization) else { return nil }
        if let value, BearerToken.equalInConstantTime(offered, value) { return .unnamed }
        return named?.holder(ofToken: offered).map { .named($0) }
    }
}

/// `Authorization: Bearer TOKEN`, as the operator token and the gateway tokens read it.
enum BearerToken {
    /// The token's bytes, or nil without a bearer header.
    static func offered(in authorization: String?) -> [UInt8]? {
        guard let authorization, authorization.lowercased().hasPrefix("bearer ") else { return nil }
        return Array(authorization.dropFirst("bearer ".count).trimmingCharacters(in: .whitespaces).utf8)
    }

    /// Equal or not, in the same time wherever they differ (only their lengths show).
    static func equalInConstantTime(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        SecretIndex<Int>.equalInConstantTime(a, b)
    }
}
