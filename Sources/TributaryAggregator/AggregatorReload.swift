import Foundation
import Logging
import NIOPosix
import TributaryConfig
import TributaryLogging
import TributaryRuntime

/// Where a running aggregator reads its configuration again on SIGHUP (`systemctl reload`):
/// the file and the flags it was started with, and the process's logging.
public struct AggregatorReloadSource: Sendable {
    public var file: String?
    public var overrides: AggregatorConfig.Overrides
    /// The level and format of the process's log, changed by a reload; nil: left as they are.
    public var logging: LiveLogging?

    public init(file: String?, overrides: AggregatorConfig.Overrides, logging: LiveLogging?) {
        self.file = file
        self.overrides = overrides
        self.logging = logging
    }
}

/// What became of one reload.
public enum AggregatorReloadOutcome: Sendable, Equatable {
    case applied
    /// The new configuration has problems (every one, as `--check-config` names them), or a
    /// file it names does not load (a certificate, a key).
    case invalid([String])
    /// The new configuration changes keys a running aggregator cannot take.
    case restartNeeded([String])
}

extension AggregatorConfig {
    /// The keys whose new value a running aggregator cannot take: a reload changing any is
    /// refused whole, naming them.
    public func restartOnlyChanges(to new: AggregatorConfig) -> [String] {
        var keys: [String] = []
        func check(_ key: String, _ same: Bool) { if !same { keys.append(key) } }
        check("listen", listenHost == new.listenHost && listenPort == new.listenPort)
        check("data_dir", dataDirectory == new.dataDirectory)
        check("sink", sink.description == new.sink.description && keepsLocalCopy == new.keepsLocalCopy)
        check("clickhouse", "\(clickHouse)" == "\(new.clickHouse)")
        check("stale_after_seconds", staleAfterSeconds == new.staleAfterSeconds)
        check("metrics.per_gateway", metricsPerGateway == new.metricsPerGateway)
        check("limits.max_body_bytes", limits.maxBodyBytes == new.limits.maxBodyBytes)
        check("limits.max_concurrent_decodes", limits.maxConcurrentDecodes == new.limits.maxConcurrentDecodes)
        // The per-address bytes change live (their default follows max_in_flight_bytes, which does).
        var connections = new.limits.connections
        connections.maxInFlightBytesPerAddress = limits.connections.maxInFlightBytesPerAddress
        check("limits.max_connections (and the other connection limits and timeouts)",
              "\(limits.connections)" == "\(connections)")
        check("admin", adminToken == new.adminToken && operatorTokenFile == new.operatorTokenFile)
        check("gateway_auth.token_file", gatewayTokenFile == new.gatewayTokenFile)
        check("tls (on or off, client_ca_file, client_certificates)",
              (tls == nil) == (new.tls == nil) && tls?.clientCAFile == new.tls?.clientCAFile
                && tls?.clientCertificates == new.tls?.clientCertificates)
        check("audit.dir", auditDirectory == new.auditDirectory)
        check("audit.max_bytes", auditMaxBytes == new.auditMaxBytes)
        // The upstream token's contents are the token file's business (read again on change).
        func described(_ upstream: Upstream?) -> String {
            guard var upstream else { return "" }
            upstream.token = nil
            return "\(upstream)"
        }
        check("upstream, relay_id, trusted_relays",
              described(upstream) == described(new.upstream) && relayID == new.relayID && trustedRelays == new.trustedRelays)
        return keys
    }
}

extension Aggregator {
    /// The configuration in force: the one started with, or the last reload's.
    public var liveConfig: AggregatorConfig { live.withLock { $0 } }

    /// Reads the configuration again and applies what may change live: the sink allow-list
    /// (checked against the sink in use), admission and batch limits, `max_gateways`, the TLS
    /// certificate and key (for new connections), audit retention, log level and format. A
    /// configuration with a problem, or changing a key that needs a restart, is refused whole
    /// and logged; the running configuration stays.
    @discardableResult
    public func reload(from source: AggregatorReloadSource) -> AggregatorReloadOutcome {
        let current = liveConfig
        func refuse(_ outcome: AggregatorReloadOutcome, _ what: String, _ details: String) -> AggregatorReloadOutcome {
            logger.error("configuration reload refused: \(what); the running configuration stays", metadata: [
                "file": "\(source.file ?? "-")", "problems": "\(details)",
            ])
            return outcome
        }
        let fresh: AggregatorConfig
        do {
            fresh = try AggregatorConfig.loadAll(file: source.file, overrides: source.overrides)
        } catch {
            let problems = error.problems.map(\.description)
            return refuse(.invalid(problems), "the new configuration has problems", problems.joined(separator: "; "))
        }
        let fixed = current.restartOnlyChanges(to: fresh)
        guard fixed.isEmpty else {
            return refuse(.restartNeeded(fixed), "keys that need a restart changed",
                          "\(fixed.joined(separator: ", ")) cannot change without a restart (systemctl restart)")
        }
        // The certificate and key first: the one step that can still fail.
        if let tls = fresh.tls, let context = tlsContext {
            do {
                try context.replace(with: try tls.serverConfiguration())
            } catch {
                return refuse(.invalid(["tls: \(error)"]), "the new certificate or key does not load", "tls: \(error)")
            }
        }
        ingestor.apply(limits: fresh.limits)
        connectionLimits.setAdmission(batches: fresh.limits.maxInFlightBatches, bytes: fresh.limits.maxInFlightBytes,
                                      perAddressBytes: fresh.limits.connections.maxInFlightBytesPerAddress)
        audit.setRetentionDays(fresh.auditRetentionDays)
        if let logging = source.logging {
            logging.level = fresh.logLevel
            logging.format = fresh.logFormat
        }
        live.withLock { $0 = fresh }
        logger.notice("configuration reloaded", metadata: [
            "file": "\(source.file ?? "-")", "max_in_flight_batches": "\(fresh.limits.maxInFlightBatches)",
            "max_gateways": "\(fresh.limits.maxGateways)", "audit_retention_days": "\(fresh.auditRetentionDays)",
            "tls": "\(fresh.tls.map { "certificate reloaded from \($0.certificateFile)" } ?? "off")", "log_level": "\(fresh.logLevel)",
        ])
        return .applied
    }

    /// Reloads on each SIGHUP until cancelled; without a source, says that nothing is reloaded.
    func reloadOnHangup() async {
        let hangups = HangupSignals.stream()
        logger.info("reloading the configuration on SIGHUP", metadata: ["file": "\(reloadSource?.file ?? "-")"])
        for await _ in hangups {
            guard let source = reloadSource else {
                logger.warning("SIGHUP: this aggregator was started without a configuration source to reload; nothing changed")
                continue
            }
            // Off the cooperative pool: reading files and loading certificates block briefly.
            do {
                _ = try await NIOThreadPool.singleton.runIfActive { self.reload(from: source) }
            } catch {
                logger.warning("SIGHUP: configuration not reloaded", metadata: ["error": "\(error)"])
            }
        }
    }
}
