import TributaryCore

/// The gateway token file's format, shared by the aggregator (which checks tokens) and the
/// fleet simulator (whose virtual gateways send them): one `GATEWAY_ID TOKEN` a line, LF or
/// CRLF, `#` starting a comment, blank lines ignored. Tokens are at least 16 characters without
/// spaces or `#`. A gateway may have two lines, its old and its new token while a rotation is
/// under way (both are accepted until the old line is removed); a third is an error, and so is
/// a token listed twice (two gateways sharing a token could write as each other). Errors name
/// the line, never its fields, which may be tokens in the wrong column. The operator token file
/// (`admin.tokens_file`) has the same format with an operator's name first (`Holder.operator`).
public enum GatewayTokenFile {
    /// Whose tokens a file holds: the first field's name in messages.
    public enum Holder: Sendable {
        case gateway, `operator`

        public var field: String { self == .gateway ? "GATEWAY_ID" : "NAME" }
        public var noun: String { self == .gateway ? "gateway" : "operator" }
        public var idea: String { self == .gateway ? "gateway id" : "operator name" }
    }

    public struct Entry: Sendable, Equatable {
        public let gateway: String
        public let token: [UInt8]

        public init(gateway: String, token: [UInt8]) {
            self.gateway = gateway
            self.token = token
        }
    }

    public struct LineError: Error, Sendable, Equatable, CustomStringConvertible {
        public let line: Int
        public let reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    public static func parse(_ text: String, holder: Holder = .gateway) throws(LineError) -> [Entry] {
        var entries: [Entry] = []
        var gatewayLines: [String: [Int]] = [:], tokenLines: [[UInt8]: Int] = [:]
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let number = index + 1
            func fail(_ reason: String) -> LineError { LineError(line: number, reason: reason) }
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            guard fields.count == 2 else { throw fail("expected \(holder.field) TOKEN, found \(fields.count) fields") }
            let gateway = String(fields[0]), token = Array(fields[1].utf8)
            guard GatewayID.isValid(gateway) else { throw fail("the first field is not a valid \(holder.idea) (letters, digits, '-', '_', '.')") }
            guard token.count >= 16 else { throw fail("the token has fewer than 16 characters") }
            // Two lines for one gateway are its old and new token during a rotation; more is a mistake.
            if let lines = gatewayLines[gateway], lines.count >= 2 {
                throw fail("a third token for the \(holder.noun) of lines \(lines[0]) and \(lines[1]) (two are allowed, for a rotation)")
            }
            if let first = tokenLines[token] { throw fail("the same token as line \(first)") }
            gatewayLines[gateway, default: []].append(number)
            tokenLines[token] = number
            entries.append(Entry(gateway: gateway, token: token))
        }
        return entries
    }
}
