import Foundation

/// A replicated ClickHouse cluster on loopback: one ZooKeeper and `shards` x `replicas`
/// clickhouse-server processes, each with its own directory, all declaring the cluster
/// `tributary` (`internal_replication` on every shard) and their own `{shard}`/`{replica}`
/// macros. No tables: the tests apply the shipped DDL (`deploy/clickhouse/cluster/`).
public final class ClickHouseCluster: Sendable {
    public let zooKeeper: ZooKeeperServer
    /// The servers by shard, then replica: `shards[0][1]` is the second replica of the first shard.
    public let shards: [[ClickHouseServer]]
    public var servers: [ClickHouseServer] { shards.flatMap { $0 } }

    /// Why the cluster cannot run here, or nil when it can.
    public static var unavailableReason: String? {
        ClickHouseServer.unavailableReason ?? ZooKeeperServer.unavailableReason
    }

    /// Starts ZooKeeper, then every server. Shards are named `1`, `2`... and replicas `r1`,
    /// `r2`... in the macros.
    public init(directory: String, shards shardCount: Int = 2, replicas: Int = 2,
                sessionTimeout: Duration = .seconds(4)) async throws {
        zooKeeper = try await ZooKeeperServer(directory: directory + "/zookeeper")
        let ports = try (0..<shardCount).map { _ in try (0..<replicas).map { _ in try FreePort.allocate() } }
        let layout = ports.map { ClickHouseServer.Shard(replicaTCPPorts: $0) }
        var shards: [[ClickHouseServer]] = []
        for (shard, replicaPorts) in ports.enumerated() {
            var servers: [ClickHouseServer] = []
            for (replica, port) in replicaPorts.enumerated() {
                var replication = ClickHouseServer.Replication(shard: "\(shard + 1)", replica: "r\(replica + 1)",
                                                               zooKeeperPort: zooKeeper.port)
                replication.sessionTimeout = sessionTimeout
                servers.append(try await ClickHouseServer(directory: directory + "/shard\(shard + 1)-r\(replica + 1)", tcpPort: port,
                                                          cluster: layout, replication: replication))
            }
            shards.append(servers)
        }
        self.shards = shards
    }

    /// Stops every server, then ZooKeeper.
    public func stop() async {
        for server in servers { await server.stop() }
        await zooKeeper.stop()
    }
}
