import Foundation
import Logging
import Synchronization
import TributaryCore

/// Per-gateway bearer tokens for `/v1/batches`, from `gateway_auth.token_file`: one
/// `GATEWAY_ID TOKEN` a line, `#` comments and blank lines ignored. A request must carry
/// `Authorization: Bearer TOKEN`; the token says which gateway is talking, and a gateway may
/// only send its own batches, with its own readings.
///
/// The file is read again when it changes (checked at most once a second, on requests), so a
/// token is added or revoked without a restart. A file that no longer parses is logged and the
/// tokens read before stay in force: a typo must not lock the whole fleet out.
public final class GatewayTokens: Sendable {
    public let path: String
    private let logger: Logger
    private let state: Mutex<State>

    struct Entry: Sendable, Equatable {
        let gateway: String
        let token: [UInt8]
    }

    private struct State {
        var entries: [Entry]
        var modified: timespec
        var checkedAt: ContinuousClock.Instant
    }

    public enum Authentication: Sendable, Equatable {
        case gateway(String)
        /// No `Authorization: Bearer` header.
        case missing
        /// A token no gateway holds.
        case unknown
    }

    /// Reads the file; a missing or malformed one is an error naming the file (and the line).
    public init(path: String, logger: Logger) throws(AggregatorStartError) {
        self.path = path
        self.logger = logger
        let (entries, modified) = try Self.read(path)
        state = Mutex(State(entries: entries, modified: modified, checkedAt: .now))
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & 0o077 != 0 {
            logger.warning("gateway token file is readable by other users; chmod 600 it", metadata: ["file": "\(path)"])
        }
    }

    public var count: Int { state.withLock { $0.entries.count } }

    /// Which gateway the `Authorization` header speaks for. Every token is compared, each in
    /// the same time wherever it differs, so timing tells nothing about which one came close.
    public func authenticate(authorization: String?) -> Authentication {
        guard let authorization, authorization.lowercased().hasPrefix("bearer ") else { return .missing }
        let offered = Array(authorization.dropFirst("bearer ".count).trimmingCharacters(in: .whitespaces).utf8)
        var match: String?
        for entry in currentEntries() where Self.equalInConstantTime(offered, entry.token) {
            match = entry.gateway
        }
        return match.map { .gateway($0) } ?? .unknown
    }

    private static func equalInConstantTime(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// The entries, read again first when the file changed since the last look (a second ago or more).
    private func currentEntries() -> [Entry] {
        let (entries, due, modified) = state.withLock { s in
            let due = ContinuousClock.now - s.checkedAt >= .seconds(1)
            if due { s.checkedAt = .now }
            return (s.entries, due, s.modified)
        }
        guard due else { return entries }
        var info = stat()
        guard stat(path, &info) == 0 else {
            logger.error("gateway token file is gone; keeping the tokens read before", metadata: ["file": "\(path)"])
            return entries
        }
        guard info.st_mtim.tv_sec != modified.tv_sec || info.st_mtim.tv_nsec != modified.tv_nsec else { return entries }
        do {
            let (fresh, stamp) = try Self.read(path)
            state.withLock { s in
                s.entries = fresh
                s.modified = stamp
            }
            logger.notice("gateway tokens reloaded", metadata: ["file": "\(path)", "gateways": "\(fresh.count)"])
            return fresh
        } catch {
            // Remember the stamp, so the same broken file is not parsed (and logged) every second.
            state.withLock { $0.modified = info.st_mtim }
            logger.error("gateway token file not reloaded; keeping the tokens read before", metadata: ["error": "\(error.message)"])
            return entries
        }
    }

    private static func read(_ path: String) throws(AggregatorStartError) -> ([Entry], timespec) {
        var info = stat()
        guard stat(path, &info) == 0, let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw AggregatorStartError(message: "gateway_auth.token_file: cannot read \(path)")
        }
        return (try parse(text, file: path), info.st_mtim)
    }

    /// `GATEWAY_ID TOKEN` lines. Tokens are at least 16 characters; a gateway or a token listed
    /// twice is an error (two gateways sharing a token could write as each other).
    static func parse(_ text: String, file: String) throws(AggregatorStartError) -> [Entry] {
        var entries: [Entry] = []
        var gateways = Set<String>(), tokens = Set<[UInt8]>()
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            func fail(_ reason: String) -> AggregatorStartError {
                AggregatorStartError(message: "gateway_auth.token_file \(file) line \(number + 1): \(reason)")
            }
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            guard fields.count == 2 else { throw fail("expected GATEWAY_ID TOKEN, found \(fields.count) fields") }
            let gateway = String(fields[0]), token = Array(fields[1].utf8)
            guard GatewayID.isValid(gateway) else { throw fail("'\(Printable.clean(gateway, maxLength: 64))' is not a valid gateway id") }
            guard token.count >= 16 else { throw fail("the token for \(gateway) has fewer than 16 characters") }
            guard gateways.insert(gateway).inserted else { throw fail("gateway \(gateway) is listed twice") }
            guard tokens.insert(token).inserted else { throw fail("the token for \(gateway) is another gateway's too") }
            entries.append(Entry(gateway: gateway, token: token))
        }
        return entries
    }
}
