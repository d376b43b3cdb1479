import Foundation
import Logging
import TributaryConfig

/// `tributary-aggregator --check-config`, as `nginx -t`: the configuration read as a start would
/// read it, every file it names read too (operator and gateway token files, TLS certificates and
/// keys, the ClickHouse password and CA), then either what the aggregator would run with, secrets
/// redacted, or every problem found.
public enum AggregatorConfigCheck {
    public typealias Outcome = ConfigCheckOutcome

    /// `logger` receives nothing of note (the token files' readers want one).
    public static func run(file: String?, overrides: AggregatorConfig.Overrides, logger: Logger) -> Outcome {
        let config: AggregatorConfig
        do {
            config = try AggregatorConfig.loadAll(file: file, overrides: overrides)
        } catch {
            return Outcome(summary: "", problems: error.problems.map(\.description))
        }
        var notes: [String] = []
        let problems = checkFiles(config, logger: logger, notes: &notes)
        guard problems.isEmpty else { return Outcome(summary: "", problems: problems) }
        return Outcome(summary: summary(config, file: file, notes: notes), problems: [])
    }

    /// The files the loader names but a start reads: each read as the start would, nothing
    /// created (the default operator token file, when missing, is only noted).
    static func checkFiles(_ config: AggregatorConfig, logger: Logger, notes: inout [String]) -> [String] {
        var problems: [String] = []
        var unnamed: AdminToken?
        switch config.adminToken {
        case .file(let path, createIfMissing: true) where !FileManager.default.fileExists(atPath: path):
            notes.append("admin token file \(path) does not exist yet: the first start creates it with a random token")
        default:
            do {
                unnamed = try AdminToken.resolve(config.adminToken)
            } catch {
                problems.append("\(error)")
            }
        }
        if let path = config.operatorTokenFile {
            do {
                _ = try NamedTokens(path: path, key: "admin.tokens_file", holder: .operator, reserved: unnamed?.reserved, logger: logger)
            } catch {
                problems.append(error.message)
            }
        }
        if let path = config.gatewayTokenFile {
            do {
                _ = try NamedTokens(path: path, logger: logger)
            } catch {
                problems.append(error.message)
            }
        }
        if let tls = config.tls {
            do {
                _ = try tls.serverConfiguration()
            } catch {
                problems.append(error.message)
            }
        }
        if let problem = ConfigCheckOutcome.dataDirectoryProblem(config.dataDirectory) { problems.append(problem) }
        return problems
    }

    /// The configuration in the file's words; a secret shows as `(redacted)`.
    public static func summary(_ config: AggregatorConfig, file: String?, notes: [String] = []) -> String {
        var lines: [String] = ["# tributary-aggregator configuration, from \(file ?? "defaults and flags"): OK"]
        lines += notes.map { "# note: \($0)" }
        func add(_ indent: Int, _ key: String, _ value: String? = nil) {
            lines.append(String(repeating: "  ", count: indent) + key + ":" + (value.map { " " + $0 } ?? ""))
        }
        add(0, "listen", "\(config.listenHost):\(config.listenPort)")
        add(0, "data_dir", config.dataDirectory)
        add(0, "log_level", config.logLevel.rawValue)
        add(0, "log_format", config.logFormat.rawValue)
        add(0, "sink", config.keepsLocalCopy ? config.sink.description : "none")
        if let list = config.sinkAllowList { add(0, "sink_allow_list", list.map(\.description).joined(separator: ", ")) }
        add(0, "stale_after_seconds", "\(config.staleAfterSeconds)")
        add(0, "metrics")
        add(1, "per_gateway", config.metricsPerGateway.description)
        add(0, "limits")
        let l = config.limits
        add(1, "max_body_bytes", "\(l.maxBodyBytes)")
        add(1, "max_decompressed_bytes", "\(l.maxDecompressedBytes)")
        add(1, "max_concurrent_decodes", "\(l.maxConcurrentDecodes)")
        add(1, "max_in_flight_batches", "\(l.maxInFlightBatches)")
        add(1, "max_in_flight_bytes", "\(l.maxInFlightBytes)")
        add(1, "max_readings_per_batch", "\(l.batch.maxReadings)")
        add(1, "max_string_bytes", "\(l.batch.maxStringBytes)")
        add(1, "max_gateways", "\(l.maxGateways)")
        add(1, "max_connections", "\(l.connections.maxConnections)")
        add(1, "max_connections_per_address", "\(l.connections.maxConnectionsPerAddress)")
        add(0, "admin")
        switch config.adminToken {
        case .inline: add(1, "token", "(redacted)")
        case .file(let path, let create): add(1, "token_file", "\(path)\(create ? " (default)" : "") (token redacted)")
        case .none: add(1, "token", "none (named tokens only)")
        }
        if let path = config.operatorTokenFile { add(1, "tokens_file", "\(path) (read, tokens redacted)") }
        if let path = config.gatewayTokenFile { add(0, "gateway_auth"); add(1, "token_file", "\(path) (read, tokens redacted)") }
        if let tls = config.tls {
            add(0, "tls")
            add(1, "cert_file", tls.certificateFile)
            add(1, "key_file", "\(tls.keyFile) (read)")
            if let ca = tls.clientCAFile { add(1, "client_ca_file", ca); add(1, "client_certificates", tls.clientCertificates.rawValue) }
        }
        add(0, "audit")
        add(1, "dir", config.auditDirectory ?? config.dataDirectory + "/audit")
        add(1, "retention_days", "\(config.auditRetentionDays)")
        add(1, "max_bytes", "\(config.auditMaxBytes)")
        if let upstream = config.upstream {
            add(0, "relay_id", config.relayID)
            add(0, "upstream")
            add(1, "urls", upstream.urls.joined(separator: ", "))
            if let path = upstream.tokenFile { add(1, "token_file", "\(path) (read, token redacted)") }
        }
        if !config.trustedRelays.isEmpty { add(0, "trusted_relays", config.trustedRelays.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
}
