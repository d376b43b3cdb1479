import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import Synchronization
import TributaryConfig
import TributaryLogging
import TributaryRuntime

/// Where a running agent reads its configuration again on SIGHUP (`systemctl reload`): the file
/// and the flags it was started with (flags still override the file), and the process's logging.
public struct AgentReloadSource: Sendable {
    public var file: String?
    public var overrides: AgentConfig.Overrides
    /// The level and format of the process's log, changed by a reload; nil: left as they are.
    public var logging: LiveLogging?

    public init(file: String?, overrides: AgentConfig.Overrides, logging: LiveLogging?) {
        self.file = file
        self.overrides = overrides
        self.logging = logging
    }
}

extension AgentConfig {
    /// The keys whose new value a running agent cannot take (the buffer file, the broker
    /// connection and its persistent session, the listener, the HTTP client's TLS): a reload
    /// that changes any is refused whole, naming them.
    public func restartOnlyChanges(to new: AgentConfig) -> [String] {
        var keys: [String] = []
        func check(_ key: String, _ same: Bool) { if !same { keys.append(key) } }
        check("gateway_id", gatewayID == new.gatewayID)
        check("data_dir", dataDirectory == new.dataDirectory)
        check("mqtt.broker", mqtt.broker == new.mqtt.broker)
        check("mqtt.client_id", mqttClientID == new.mqttClientID)
        check("mqtt.username", mqtt.username == new.mqtt.username)
        check("mqtt.password", mqtt.password == new.mqtt.password)
        check("mqtt.tls", mqtt.tls == new.mqtt.tls)
        check("mqtt.keepalive_seconds", mqtt.keepAliveSeconds == new.mqtt.keepAliveSeconds)
        check("mqtt.reconnect_min_seconds", mqtt.reconnectMinSeconds == new.mqtt.reconnectMinSeconds)
        check("mqtt.reconnect_max_seconds", mqtt.reconnectMaxSeconds == new.mqtt.reconnectMaxSeconds)
        check("buffer.synchronous", buffer.synchronous == new.buffer.synchronous)
        check("buffer.commit_interval_ms", buffer.commitIntervalMs == new.buffer.commitIntervalMs)
        check("buffer.commit_max_messages", buffer.commitMaxMessages == new.buffer.commitMaxMessages)
        check("buffer.queue_capacity", buffer.queueCapacity == new.buffer.queueCapacity)
        check("buffer.redelivery_window", buffer.redeliveryWindow == new.buffer.redeliveryWindow)
        check("buffer.disk_reserve_bytes", buffer.diskReserveBytes == new.buffer.diskReserveBytes)
        check("status_listen", statusListen?.host == new.statusListen?.host && statusListen?.port == new.statusListen?.port)
        check("aggregator.tls", aggregator.tls == new.aggregator.tls)
        check("aggregator.request_timeout_seconds", aggregator.requestTimeoutSeconds == new.aggregator.requestTimeoutSeconds)
        // The STATE will is set on the connection: a new host id needs a new one.
        check("sparkplug.host_id", sparkplug.hostID == new.sparkplug.hostID)
        return keys
    }
}

/// What became of one reload.
public enum AgentReloadOutcome: Sendable, Equatable {
    case applied
    /// The new configuration has problems (every one, as `--check-config` names them).
    case invalid([String])
    /// The new configuration changes keys a running agent cannot take.
    case restartNeeded([String])
}

extension Agent {
    /// Reads the configuration again and applies what may change live; a configuration with a
    /// problem, or one changing a key that needs a restart, is refused whole: logged, shown as
    /// the gateway's last error in the fleet view, and the running configuration stays.
    @discardableResult
    public func reload(from source: AgentReloadSource) -> AgentReloadOutcome {
        let current = liveConfig
        let fresh: AgentConfig
        do {
            fresh = try AgentConfig.loadAll(file: source.file, overrides: source.overrides)
        } catch {
            let problems = error.problems.map(\.description)
            let message = "configuration reload refused, the running configuration stays: "
                + problems[0] + (problems.count > 1 ? " (and \(problems.count - 1) more problem(s); see the log)" : "")
            stats.recordError(message)
            logger.error("configuration reload refused: the new configuration has problems; the running configuration stays", metadata: [
                "gateway": "\(current.gatewayID)", "file": "\(source.file ?? "-")", "problems": "\(problems.joined(separator: "; "))",
            ])
            return .invalid(problems)
        }
        let fixed = current.restartOnlyChanges(to: fresh)
        guard fixed.isEmpty else {
            let message = "configuration reload refused, the running configuration stays: "
                + "\(fixed.joined(separator: ", ")) cannot change without a restart (systemctl restart)"
            stats.recordError(message)
            logger.error("configuration reload refused: keys that need a restart changed; the running configuration stays", metadata: [
                "gateway": "\(current.gatewayID)", "file": "\(source.file ?? "-")", "keys": "\(fixed.joined(separator: ", "))",
            ])
            return .restartNeeded(fixed)
        }
        do {
            try ingest.apply(fresh)
        } catch {
            // Checked by the loader already; a decoder that still cannot be made refuses the reload.
            let message = "configuration reload refused, the running configuration stays: \(error)"
            stats.recordError(message)
            logger.error("configuration reload refused", metadata: ["gateway": "\(current.gatewayID)", "error": "\(error)"])
            return .invalid(["\(error)"])
        }
        uploader.apply(fresh)
        if let logging = source.logging {
            logging.level = fresh.logLevel
            logging.format = fresh.logFormat
        }
        setLiveConfig(fresh)
        let added = Set(fresh.mqtt.subscriptions.map(\.topic)).subtracting(current.mqtt.subscriptions.map(\.topic))
        let removed = Set(current.mqtt.subscriptions.map(\.topic)).subtracting(fresh.mqtt.subscriptions.map(\.topic))
        logger.notice("configuration reloaded", metadata: [
            "gateway": "\(fresh.gatewayID)", "file": "\(source.file ?? "-")",
            "subscriptions": "\(fresh.mqtt.subscriptions.count)", "subscribed": "\(added.sorted())", "unsubscribed": "\(removed.sorted())",
            "aggregators": "\(fresh.aggregator.urls)", "log_level": "\(fresh.logLevel)",
        ])
        return .applied
    }
}

/// The service that reloads the agent on each SIGHUP until a graceful shutdown.
struct ReloadOnHangup: Service {
    let agent: Agent
    let source: AgentReloadSource

    func run() async throws {
        let hangups = HangupSignals.stream()
        // Ready: a test (or an operator's script) may send SIGHUP once this is logged.
        agent.logger.info("reloading the configuration on SIGHUP", metadata: ["file": "\(source.file ?? "-")"])
        for await _ in hangups.cancelOnGracefulShutdown() {
            // Off the cooperative pool: reading files and building decoders block briefly.
            do {
                _ = try await NIOThreadPool.singleton.runIfActive { agent.reload(from: source) }
            } catch {
                agent.logger.warning("SIGHUP: configuration not reloaded", metadata: ["error": "\(error)"])
            }
        }
    }
}
