import Foundation
import TributaryConfig
import Logging
import Synchronization
import TributaryCore
import TributaryCrypto

/// Per-gateway bearer tokens for `/v1/batches`, from `gateway_auth.token_file`: one
/// `GATEWAY_ID TOKEN` a line, `#` comments and blank lines ignored. A request must carry
/// `Authorization: Bearer TOKEN`; the token says which gateway is talking, and a gateway may
/// only send its own batches, with its own readings.
///
/// The file is read again when it changes (looked at every second), so a token is added,
/// rotated (two lines for one gateway while both are in use) or revoked without a restart. A file that no longer parses, holds no token
/// or is gone is logged once and the tokens read before stay in force: a typo or a half-written
/// file must not lock the whole fleet out. Messages about the file name line numbers, never
/// its fields, which may be tokens in the wrong column.
public final class GatewayTokens: Sendable {
    public let path: String
    private let logger: Logger

    typealias Entry = GatewayTokenFile.Entry

    /// The tokens last read well, by the gateway holding each; the file is reread when `watch`
    /// sees it change.
    private let entries: Mutex<SecretIndex<String>>
    private let watch: FileWatch

    public enum Authentication: Sendable, Equatable {
        case gateway(String)
        /// No `Authorization: Bearer` header.
        case missing
        /// A token no gateway holds.
        case unknown
    }

    /// Reads the file; a missing, empty or malformed one is an error naming the file (and the line).
    public init(path: String, logger: Logger) throws(AggregatorStartError) {
        self.path = path
        self.logger = logger
        // Watched from before the first read: an edit made meanwhile is seen next time.
        watch = FileWatch(path: path)
        entries = Mutex(Self.index(try Self.read(path)))
    }

    public var count: Int { entries.withLock { $0.count } }

    /// Which gateway the `Authorization` header speaks for. The token is looked up by a keyed
    /// digest and compared in constant time (`SecretIndex`), so timing tells nothing about which
    /// token came close, and the cost does not grow with the fleet.
    public func authenticate(authorization: String?) -> Authentication {
        guard let offered = BearerToken.offered(in: authorization) else { return .missing }
        return currentEntries().holder(of: offered).map { .gateway($0) } ?? .unknown
    }

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
            logger.error("gateway token file is gone; keeping the tokens read before", metadata: ["file": "\(path)"])
            return entries
        case .rewritten:
            break
        }
        do {
            let fresh = Self.index(try Self.read(path))
            self.entries.withLock { $0 = fresh }
            logger.notice("gateway tokens reloaded", metadata: ["file": "\(path)", "gateways": "\(fresh.count)"])
            return fresh
        } catch {
            logger.error("gateway token file not reloaded; keeping the tokens read before", metadata: ["error": "\(error.message)"])
            return entries
        }
    }

    private static func read(_ path: String) throws(AggregatorStartError) -> [Entry] {
        let text: String
        do {
            text = try SecretFile.read(path, as: .lines)
        } catch {
            throw AggregatorStartError(message: "gateway_auth.token_file: \(error.description)")
        }
        let entries = try parse(text, file: path)
        guard !entries.isEmpty else {
            throw AggregatorStartError(message: "gateway_auth.token_file \(path) holds no GATEWAY_ID TOKEN line")
        }
        return entries
    }

    /// The entries of the file's text (see `GatewayTokenFile`); errors name the file and line.
    static func parse(_ text: String, file: String) throws(AggregatorStartError) -> [Entry] {
        do {
            return try GatewayTokenFile.parse(text)
        } catch {
            throw AggregatorStartError(message: "gateway_auth.token_file \(file) \(error)")
        }
    }
}
