import Foundation
import TributaryConfig
import TributaryCore

/// `tributary-agent --check-config`, as `nginx -t`: the configuration read as a start would
/// read it (every referenced file too: tokens, keys, passwords, certificates), then either what
/// the agent would run with, secrets redacted, or every problem found.
public enum AgentConfigCheck {
    public typealias Outcome = ConfigCheckOutcome

    public static func run(file: String?, overrides: AgentConfig.Overrides) -> Outcome {
        let config: AgentConfig
        do {
            config = try AgentConfig.loadAll(file: file, overrides: overrides)
        } catch {
            return Outcome(summary: "", problems: error.problems.map(\.description))
        }
        let problems = checkFiles(config)
        guard problems.isEmpty else { return Outcome(summary: "", problems: problems) }
        return Outcome(summary: summary(config, file: file), problems: [])
    }

    /// What the loader does not read itself: the certificates and keys, loaded as a connection
    /// would load them; the data directory, which must be a directory if it is there.
    static func checkFiles(_ config: AgentConfig) -> [String] {
        var problems: [String] = []
        if let tls = config.aggregator.tls {
            do {
                _ = try tls.clientConfiguration(gatewayID: config.gatewayID)
            } catch {
                problems.append(error.description)
            }
        }
        if let problem = ConfigCheckOutcome.dataDirectoryProblem(config.dataDirectory) { problems.append(problem) }
        return problems
    }

    /// The configuration in the file's own words and order; a secret shows as `(redacted)`.
    public static func summary(_ config: AgentConfig, file: String?) -> String {
        var lines: [String] = ["# tributary-agent configuration, from \(file ?? "defaults and flags"): OK"]
        func add(_ indent: Int, _ key: String, _ value: String? = nil) {
            lines.append(String(repeating: "  ", count: indent) + key + ":" + (value.map { " " + $0 } ?? ""))
        }
        add(0, "gateway_id", config.gatewayID)
        add(0, "data_dir", config.dataDirectory)
        add(0, "log_level", config.logLevel.rawValue)
        add(0, "log_format", config.logFormat.rawValue)
        add(0, "status_listen", config.statusListen.map { "\($0.host):\($0.port)" } ?? "off")
        add(0, "mqtt")
        add(1, "broker", "\(config.mqtt.broker)")
        add(1, "client_id", config.mqttClientID)
        add(1, "keepalive_seconds", "\(config.mqtt.keepAliveSeconds)")
        add(1, "reconnect_min_seconds", "\(config.mqtt.reconnectMinSeconds)")
        add(1, "reconnect_max_seconds", "\(config.mqtt.reconnectMaxSeconds)")
        if let username = config.mqtt.username { add(1, "username", username) }
        if config.mqtt.password != nil { add(1, "password", "(redacted)") }
        if let tls = config.mqtt.tls { addTLS(tls, indent: 1, add) }
        add(1, "subscriptions")
        for s in config.mqtt.subscriptions {
            lines.append("    - topic: \(s.topic)")
            add(3, "format", s.format.rawValue)
            if let template = s.template { add(3, "template", template.description) }
            if let field = s.timeField { add(3, "time_field", field) }
            if let zone = s.timeZone { add(3, "time_zone", zone.description) }
            if let classification = s.policy.classification { add(3, "classification", classification.rawValue) }
            if !s.policy.rules.isEmpty {
                add(3, "rules", s.policy.rules.map { "\($0.match) \($0.action.rawValue)" }.joined(separator: ", "))
            }
        }
        if config.hashKey != nil { add(0, "governance"); add(1, "hash_key_file", "(read, redacted)") }
        add(0, "buffer")
        add(1, "max_bytes", "\(config.buffer.maxBytes)")
        add(1, "full_policy", config.buffer.fullPolicy.rawValue)
        add(1, "retention_hours", config.buffer.retentionHours.map(String.init) ?? "none")
        add(1, "synchronous", config.buffer.synchronous.rawValue)
        add(1, "commit_interval_ms", "\(config.buffer.commitIntervalMs)")
        add(1, "commit_max_messages", "\(config.buffer.commitMaxMessages)")
        add(1, "queue_capacity", "\(config.buffer.queueCapacity)")
        add(1, "redelivery_window", "\(config.buffer.redeliveryWindow)")
        add(1, "disk_reserve_bytes", "\(config.buffer.diskReserveBytes)")
        add(0, "aggregator")
        add(1, "urls", config.aggregator.urls.joined(separator: ", "))
        add(1, "token_file", config.aggregator.tokenFile.map { "\($0) (read, token redacted)" } ?? "none")
        add(1, "compression", config.aggregator.compression.rawValue)
        add(1, "batch_max_readings", "\(config.aggregator.batchMaxReadings)")
        add(1, "batch_max_age_ms", "\(config.aggregator.batchMaxAgeMs)")
        add(1, "max_in_flight_batches", "\(config.aggregator.maxInFlightBatches)")
        add(1, "request_timeout_seconds", "\(config.aggregator.requestTimeoutSeconds)")
        add(1, "heartbeat_seconds", "\(config.aggregator.heartbeatSeconds)")
        add(1, "retry_initial_ms", "\(config.aggregator.retryInitialMs)")
        add(1, "retry_max_ms", "\(config.aggregator.retryMaxMs)")
        add(1, "failback_seconds", "\(config.aggregator.failbackSeconds)")
        if let tls = config.aggregator.tls { addTLS(tls, indent: 1, add) }
        return lines.joined(separator: "\n")
    }

    private static func addTLS(_ tls: ClientTLSFiles, indent: Int, _ add: (Int, String, String?) -> Void) {
        add(indent, "tls", nil)
        add(indent + 1, "ca_file", tls.caFile ?? "(the system's CAs)")
        if let cert = tls.certificateFile { add(indent + 1, "cert_file", cert) }
        if let key = tls.keyFile { add(indent + 1, "key_file", "\(key) (read)") }
    }
}
