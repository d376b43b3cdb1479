import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TributaryConfig
import TributaryBuffer
import TributaryCore
import TributaryRuntime
import TributarySync
import TributaryWire

/// The agent's optional local listener (`status_listen`): `/metrics` in Prometheus text,
/// `/healthz` (the process runs) and `/readyz` (connected to the broker, subscribed, the
/// buffer takes readings, and the aggregator does not refuse the gateway's credentials). It has no authentication, so it belongs on loopback.
public struct StatusServer: Sendable {
    let config: AgentConfig
    let buffer: BufferStore
    let stats: AgentStats

    public init(config: AgentConfig, buffer: BufferStore, stats: AgentStats) {
        self.config = config
        self.buffer = buffer
        self.stats = stats
    }

    /// The server as a Service, or nil when `status_listen` is not set. `onListening` gets the bound port.
    public func service(logger: Logger, onListening: @escaping @Sendable (Int) -> Void = { _ in }) -> (any Service)? {
        guard let (host, port) = config.statusListen else { return nil }
        if !HostPort.isLoopback(host) {
            logger.warning("status listener is not on loopback; it has no authentication", metadata: ["address": "\(host):\(port)"])
        }
        let router = Router()
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            if let problem = readinessProblem() {
                return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "not ready: \(problem)\n")))
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
        }
        router.get("/metrics") { _, _ -> Response in
            let text = try await metrics()
            return Response(status: .ok, headers: [.contentType: PrometheusText.contentType],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return Application(
            router: router,
            server: LocalListener.server,
            configuration: .init(address: .hostname(host, port: port), serverName: "tributary-agent",
                                 availableConnectionsDelegate: MaximumAvailableConnections(LocalListener.maxConnections)),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? 0
                logger.info("status listener ready", metadata: ["address": "\(host):\(bound)"])
                onListening(bound)
            },
            logger: logger)
    }

    /// Nil when ready, else why not.
    func readinessProblem() -> String? {
        if !stats.brokerConnected { return "not connected to the broker \(config.mqtt.broker)" }
        if !stats.subscribed { return "the broker has not confirmed the subscriptions" }
        if stats.bufferFull { return "the buffer is full (quota or disk); not reading from the broker" }
        if stats.sync.credentialsRefused {
            return "the aggregator refuses this gateway's credentials (401/403): nothing is delivered until aggregator.token_file "
                + "(or tls.cert_file, or gateway_id) matches what the aggregator expects; readings wait in the buffer"
        }
        return nil
    }

    func metrics() async throws -> String {
        let c = buffer.snapshot
        let (oldest, size) = try await NIOThreadPool.singleton.runIfActive { [buffer] in
            (try buffer.oldestUnacknowledgedMs(), try buffer.sizeBytes())
        }
        let now = WallClock.nowMs()
        var p = PrometheusText()
        ProcessMetrics.render(into: &p)
        p.single("tributary_agent_readings_ingested_total", .counter, help: "Readings committed to the buffer since it was created.",
                 Double(c.ingestedTotal))
        p.single("tributary_agent_readings_acknowledged_total", .counter, help: "Readings the aggregator acknowledged (its sink holds them).",
                 Double(c.acknowledgedTotal))
        p.single("tributary_agent_readings_dropped_total", .counter, help: "Readings given up under the drop_oldest quota policy.",
                 Double(c.droppedTotal))
        p.single("tributary_agent_readings_withheld_total", .counter, help: "Readings a governance drop rule kept from the buffer, since start.",
                 Double(stats.withheldTotal))
        p.single("tributary_agent_payloads_quarantined_total", .counter, help: "Payloads that could not be decoded, kept in quarantine (each counted once, a replay that fails again included).",
                 Double(c.quarantinedTotal))
        p.single("tributary_agent_quarantine_payloads", .gauge, help: "Payloads the quarantine holds now.", Double(c.quarantineHeld))
        p.single("tributary_agent_quarantine_replayed_total", .counter, help: "Quarantined payloads a replay released (decoded now, or a copy of readings stored already).",
                 Double(c.quarantineReplayedTotal))
        p.single("tributary_agent_quarantine_purged_total", .counter, help: "Quarantined payloads an operator purged.", Double(c.quarantinePurgedTotal))
        p.single("tributary_agent_redeliveries_total", .counter, help: "MQTT messages received again and not stored twice.",
                 Double(c.redeliveriesTotal))
        p.single("tributary_agent_backlog_readings", .gauge, help: "Readings buffered and not yet acknowledged.",
                 Double(c.unsealedReadings + c.sealedReadings))
        p.single("tributary_agent_sealed_batches", .gauge, help: "Batches sealed and waiting for an acknowledgement.", Double(c.sealedBatches))
        p.single("tributary_agent_batches_set_aside", .gauge, help: "Batches refused for good, kept on disk.", Double(c.setAsideBatches))
        p.single("tributary_agent_buffer_bytes", .gauge, help: "Pages in use in the buffer file.", Double(size))
        p.single("tributary_agent_lag_seconds", .gauge, help: "Age of the oldest unacknowledged reading; 0 when caught up.",
                 Double(oldest.map { max(0, now - $0) } ?? 0) / 1000)
        p.single("tributary_agent_buffer_full", .gauge, help: "1 while the buffer is at its quota or the disk is full.", stats.bufferFull ? 1 : 0)
        p.single("tributary_agent_broker_connected", .gauge, help: "1 while connected to the MQTT broker.", stats.brokerConnected ? 1 : 0)
        let counts = stats.sync.requestCounts
        p.family("tributary_agent_requests_total", .counter, help: "Requests to the aggregator by outcome (busy = 429 backpressure).")
        for outcome in RequestOutcome.allCases {
            p.sample("tributary_agent_requests_total", ["outcome": outcome.rawValue], counts[outcome, default: 0])
        }
        let sparkplug = stats.sparkplugCounts
        p.family("tributary_agent_sparkplug_events_total", .counter,
                 help: "Sparkplug B session events: sequence gaps, rebirth requests, metrics not stored, stale deaths.")
        for event in AgentStats.SparkplugEvent.allCases {
            p.sample("tributary_agent_sparkplug_events_total", ["event": event.rawValue], sparkplug[event, default: 0])
        }
        p.histogram("tributary_agent_request_seconds", help: "Requests to the aggregator, send to answer.", stats.sync.requestSeconds.snapshot)
        return p.text
    }
}
