import Foundation
import TributaryConfig
import Logging
import Synchronization
import TributaryCore
import TributaryCrypto

/// Bearer tokens by their holder's name, from a file of one `NAME TOKEN` a line (`#` comments
/// and blank lines ignored): the gateways' tokens for `/v1/batches` (`gateway_auth.token_file`,
/// `GATEWAY_ID TOKEN`; a gateway may only send its own batches, with its own readings) and the
/// operators' for the admin API and `/metrics` (`admin.tokens_file`; the audit log names who
/// asked). A request carries `Authorization: Bearer TOKEN`; the token says who is talking.
///
/// The file is read again when it changes (looked at every second), so a token is added,
/// rotated (two lines for one gateway while both are in use) or revoked without a restart. A file that no longer parses, holds no token
/// or is gone is logged once and the tokens read before stay in force: a typo or a half-written
/// file must not lock the whole fleet out. Messages about the file name line numbers, never
/// its fields, which may be tokens in the wrong column.
public final class NamedTokens: Sendable {
    public let path: String
    /// The configuration key that named the file, for messages.
    public let key: String
    public let holder: GatewayTokenFile.Holder
    /// A token the file must not hold (the unnamed operator token, for the operators' file): a
    /// name on it would be audited as the unnamed holder, and removing the line would not shut
    /// its holder out.
    private let reserved: Reserved?
    private let logger: Logger

    public struct Reserved: Sendable {
        let token: [UInt8]
        /// Where it is configured, for the message.
        let name: String
        public init(token: [UInt8], name: String) {
            self.token = token
            self.name = name
        }
    }

    typealias Entry = GatewayTokenFile.Entry

    /// The tokens last read well, by the gateway holding each; the file is reread when `watch`
    /// sees it change.
    private let entries: Mutex<SecretIndex<String>>
    private let watch: FileWatch

    public enum Authentication: Sendable, Equatable {
        /// The name of the token's holder: a gateway id, or an operator's name.
        case holder(String)
        /// No `Authorization: Bearer` header.
        case missing
        /// A token nobody in the file holds.
        case unknown
    }

    /// Reads the file; a missing, empty or malformed one is an error naming the file (and the line).
    public init(path: String, key: String = "gateway_auth.token_file", holder: GatewayTokenFile.Holder = .gateway,
                reserved: Reserved? = nil, logger: Logger) throws(AggregatorStartError) {
        self.path = path
        self.key = key
        self.holder = holder
        self.reserved = reserved
        self.logger = logger
        // Watched from before the first read: an edit made meanwhile is seen next time.
        watch = FileWatch(path: path)
        entries = Mutex(Self.index(try Self.read(path, key: key, holder: holder, reserved: reserved)))
    }

    public var count: Int { entries.withLock { $0.count } }

    /// Whom the `Authorization` header speaks for. The token is looked up by a keyed
    /// digest and compared in constant time (`SecretIndex`), so timing tells nothing about which
    /// token came close, and the cost does not grow with the fleet.
    public func authenticate(authorization: String?) -> Authentication {
        guard let offered = BearerToken.offered(in: authorization) else { return .missing }
        return holder(ofToken: offered).map { .holder($0) } ?? .unknown
    }

    /// Who holds `token` (a bearer token already taken from its header), or nil.
    func holder(ofToken token: [UInt8]) -> String? { currentEntries().holder(of: token) }

    private static func index(_ entries: [Entry]) -> SecretIndex<String> {
        SecretIndex(entries.map { (secret: $0.token, value: $0.gateway) })
    }

    /// Looks at the file now (the aggregator does every second), so an edit is taken, and
    /// logged, when it is made rather than when the next request comes.
    func refresh() { _ = currentEntries() }

    /// The entries, read again first when the file changed since the last look (a second ago or more).
    private func currentEntries() -> SecretIndex<String> {
        let entries = self.entries.withLock { $0 }
        switch watch.change() {
        case nil:
            return entries
        case .gone:
            logger.error("\(holder.noun) token file is gone; keeping the tokens read before", metadata: ["file": "\(path)"])
            return entries
        case .rewritten:
            break
        }
        do {
            let fresh = Self.index(try Self.read(path, key: key, holder: holder, reserved: reserved))
            self.entries.withLock { $0 = fresh }
            logger.notice("\(holder.noun) tokens reloaded", metadata: ["file": "\(path)", "\(holder.noun)s": "\(fresh.count)"])
            return fresh
        } catch {
            logger.error("\(holder.noun) token file not reloaded; keeping the tokens read before", metadata: ["error": "\(error.message)"])
            return entries
        }
    }

    private static func read(_ path: String, key: String, holder: GatewayTokenFile.Holder,
                             reserved: Reserved?) throws(AggregatorStartError) -> [Entry] {
        let text: String
        do {
            text = try SecretFile.read(path, as: .lines)
        } catch {
            throw AggregatorStartError(message: "\(key): \(error.description)")
        }
        let entries = try parse(text, file: path, key: key, holder: holder)
        guard !entries.isEmpty else {
            throw AggregatorStartError(message: "\(key) \(path) holds no \(holder.field) TOKEN line")
        }
        if let reserved, let entry = entries.first(where: { $0.token == reserved.token }) {
            throw AggregatorStartError(message: "\(key) \(path): \(entry.gateway)'s token is the one of \(reserved.name); give each \(holder.noun) a token of their own")
        }
        return entries
    }

    /// The entries of the file's text (see `GatewayTokenFile`); errors name the key, the file and the line.
    static func parse(_ text: String, file: String, key: String = "gateway_auth.token_file",
                      holder: GatewayTokenFile.Holder = .gateway) throws(AggregatorStartError) -> [Entry] {
        do {
            return try GatewayTokenFile.parse(text, holder: holder)
        } catch {
            throw AggregatorStartError(message: "\(key) \(file) \(error)")
        }
    }
}
