import Foundation
import TributaryConfig
import TributaryCore
import TributaryWire

extension AggregatorConfig {
    /// The `upstream:` section: an aggregator with one is a relay. It keeps each batch it
    /// accepts in its spool (and in its own sink, unless `sink: none`) and forwards it, verbatim,
    /// to the next tier: the same keys as the agent's `aggregator:` section, plus the spool's.
    public struct Upstream: Sendable {
        /// The next tier's aggregators (or relays), http:// or https:// (`url`, or `urls` for
        /// several sharing one sink: this relay prefers one and fails over, as an agent does).
        public var urls: [String]
        /// The first configured URL (the only one, usually).
        public var url: String { urls[0] }
        /// While failed over, how often the preferred upstream's `/readyz` is asked. Default 10.
        public var failbackSeconds = 10
        /// This relay's token at the next tier, from `token_file`. The next tier lists this
        /// relay's id in its `trusted_relays` (and, with `gateway_auth`, its token under that id).
        public var token: String?
        public var tokenFile: String?
        /// `tls`: `ca_file`, `cert_file`, `key_file`, as the agent's `aggregator.tls`.
        public var tls: ClientTLSFiles?
        /// Past this many bytes of batches waiting in the spool, gateways are answered 429
        /// (503 while the upstream is down), so the backlog waits in their own buffers. Default 10 GiB.
        public var maxSpoolBytes: Int64 = 10 << 30
        /// A request that passed through more relays than this is refused (422). Default 8.
        public var maxHops = 8
        /// An unforwarded batch older than this is shown as lagging (`tributaryctl check`, the
        /// alert). Default 600.
        public var maxAgeSeconds = 600
        /// Batches forwarded at once, at most; the relay adapts within this (AIMD), as an agent does.
        /// Default 16, an upstream's default share per address (`limits.max_in_flight_per_address`).
        public var maxInFlightBatches = 16
        public var requestTimeoutSeconds = 30
        public var retryInitialMs = 200
        public var retryMaxMs = 30_000
        public var compression = ContentEncoding.zstd

        public init(url: String) { urls = [url] }
        public init(urls: [String]) { self.urls = urls }
    }

    /// The host name: a relay's default `relay_id`.
    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "relay" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "relay" : name
    }

    /// `upstream:`, `relay_id:` and `trusted_relays:`, and `sink: none` (a relay that only forwards).
    mutating func applyRelaySections(_ root: ConfigSection, file: String?, upstreamFlag: String?, sinkText: String?) throws(ConfigError) {
        if let ids = try root.strings("trusted_relays") {
            for (index, id) in ids.enumerated() where !Self.isRelayID(id) {
                throw ConfigError(file: file, key: "trusted_relays[\(index)]", message: "'\(Printable.clean(id, maxLength: 64))' is not a relay id (1-128 printable characters, no spaces)")
            }
            trustedRelays = ids
        }
        let section = try root.section("upstream")
        if let text = try root.string("relay_id") {
            guard Self.isRelayID(text) else { throw ConfigError(file: file, key: "relay_id", message: "'\(Printable.clean(text, maxLength: 64))' is not a relay id (1-128 printable characters, no spaces)") }
            relayID = text
        }
        let fileURLs = try ServiceURLs.read(section, prefix: "upstream")
        let urls: [String]
        if let flag = upstreamFlag.flatMap({ ServiceURLs.splitFlag([$0]) }) {
            urls = try ServiceURLs.checked(flag, key: "upstream.urls", file: nil)
        } else if let fromFile = fileURLs {
            urls = fromFile
        } else {
            if section != nil { throw ConfigError(file: file, key: "upstream.url", message: "required: the next tier's aggregator, http(s)://HOST:PORT (or urls: a list)") }
            if sinkText == "none" { throw ConfigError(file: file, key: "sink", message: "'none' is for a relay (an upstream: section or --upstream), which forwards what it takes; an aggregator without an upstream needs a sink") }
            return
        }
        var upstream = Upstream(urls: urls)
        if let s = section {
            upstream.token = try s.secret("token_file", .token(minLength: 16))
            upstream.tokenFile = try s.string("token_file")
            if let t = try s.section("tls") {
                guard urls.contains(where: { $0.hasPrefix("https://") }) else {
                    throw s.error("tls", "no upstream URL is https:// (\(urls.joined(separator: ", "))), so this section would not be used")
                }
                upstream.tls = try t.clientTLSFiles()
            }
            if let bytes = try s.bytes("max_spool_bytes") {
                guard bytes >= 64 << 10 else { throw s.error("max_spool_bytes", "at least 64 KiB") }
                upstream.maxSpoolBytes = bytes
            }
            upstream.maxHops = try s.int("max_hops", range: 1...64) ?? upstream.maxHops
            upstream.maxAgeSeconds = try s.int("max_age_seconds", range: 1...86_400 * 30) ?? upstream.maxAgeSeconds
            upstream.maxInFlightBatches = try s.int("max_in_flight_batches", range: 1...256) ?? upstream.maxInFlightBatches
            upstream.requestTimeoutSeconds = try s.int("request_timeout_seconds", range: 1...600) ?? upstream.requestTimeoutSeconds
            upstream.retryInitialMs = try s.int("retry_initial_ms", range: 1...600_000) ?? upstream.retryInitialMs
            upstream.retryMaxMs = try s.int("retry_max_ms", range: 1...3_600_000) ?? upstream.retryMaxMs
            upstream.compression = try s.choice("compression", of: ContentEncoding.self) ?? upstream.compression
            upstream.failbackSeconds = try s.int("failback_seconds", range: 1...3600) ?? upstream.failbackSeconds
        }
        for url in urls {
            if let target = URL(string: url), (target.port ?? (url.hasPrefix("https://") ? 443 : 80)) == listenPort,
               Self.isThisMachine(target.host ?? "") && Self.isThisMachine(listenHost) || target.host == listenHost {
                throw ConfigError(file: upstreamFlag == nil ? file : nil, key: urls.count > 1 ? "upstream.urls" : "upstream.url",
                                  message: "\(url) is this aggregator's own listen address: a relay forwarding to itself would refuse every batch as a loop")
            }
        }
        // A relay its upstream trusts speaks for any gateway there: if anyone could send it
        // batches, anyone could write as any gateway upstream, past the upstream's gateway_auth.
        let provesItself = upstream.token != nil || upstream.tls?.certificateFile != nil
        if provesItself && gatewayTokenFile == nil && tls?.clientCAFile == nil {
            throw ConfigError(file: file, key: upstream.token != nil ? "upstream.token_file" : "upstream.tls.cert_file",
                              message: "this relay proves itself upstream, where it may forward any gateway's batches, but takes batches from anyone: set gateway_auth.token_file (or tls.client_ca_file) so only its own gateways can send through it")
        }
        self.upstream = upstream
    }

    static func isThisMachine(_ host: String) -> Bool {
        ["127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "::", ""].contains(host.lowercased()) || host == hostName
    }

    /// Relay ids travel in every forwarded status and are shown in tables: printable, bounded.
    static func isRelayID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && id.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !CharacterSet.controlCharacters.contains($0) }
    }
}
