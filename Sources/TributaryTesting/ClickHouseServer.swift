import Foundation

/// A real clickhouse-server on free loopback ports, with its data, config and logs in its own
/// directory and one password-protected user. Needs the `clickhouse-server` binary (Debian
/// package `clickhouse-server`, 18.16 on Debian 12; newer releases read the same config).
public final class ClickHouseServer: @unchecked Sendable {
    // @unchecked Sendable: `process` is only replaced by start/stop, which tests call in sequence.
    public let directory: String
    public let httpPort: Int
    /// The native protocol port: what other servers of a cluster use to reach this one.
    public let tcpPort: Int
    /// The HTTPS port, when started with a certificate.
    public let httpsPort: Int?
    /// The port replicas fetch parts from each other on, when started with `replication`.
    public let interserverPort: Int?
    public let user = "tributary"
    public let password: String
    private var process: ChildProcess?

    /// A shard of a cluster, as `remote_servers` lists it: the native ports of its replicas.
    public struct Shard: Sendable {
        public let replicaTCPPorts: [Int]
        public init(tcpPort: Int) { replicaTCPPorts = [tcpPort] }
        public init(replicaTCPPorts: [Int]) { self.replicaTCPPorts = replicaTCPPorts }
    }

    /// This server's place in a replicated cluster: the `{shard}` and `{replica}` macros that
    /// the replicated tables' DDL names, and the ZooKeeper they coordinate through.
    public struct Replication: Sendable {
        public var shard: String
        public var replica: String
        public var zooKeeperPort: Int
        /// How long after this server dies ZooKeeper stops counting it as alive (ClickHouse's
        /// default is 30 s; tests want it short).
        public var sessionTimeout: Duration = .seconds(4)
        public init(shard: String, replica: String, zooKeeperPort: Int) {
            self.shard = shard
            self.replica = replica
            self.zooKeeperPort = zooKeeperPort
        }
    }

    /// Writes the config and starts the server. With `cluster`, the config also declares a
    /// cluster named `clusterName` of those shards (this server may be one of them; pass
    /// `tcpPort` so it knows its own port in advance); a shard of several replicas is declared
    /// with `internal_replication` (its replicated tables copy each insert themselves).
    /// With `replication`, the server also gets its macros, ZooKeeper and an interserver port.
    /// With `tls` (PEM certificate and key files), it also serves HTTPS on `httpsPort`.
    public init(directory: String, password: String = "tributary-test-password", tcpPort: Int? = nil,
                clusterName: String = "tributary", cluster: [Shard] = [], replication: Replication? = nil,
                tls: (certificate: String, key: String)? = nil) async throws {
        self.directory = directory
        self.password = password
        httpPort = try FreePort.allocate()
        self.tcpPort = try tcpPort ?? FreePort.allocate()
        let interserverPort = try replication.map { _ in try FreePort.allocate() }
        self.interserverPort = interserverPort
        let replicationConfig = replication.map { replication in
            """
              <interserver_http_host>127.0.0.1</interserver_http_host>
              <interserver_http_port>\(interserverPort!)</interserver_http_port>
              <macros><shard>\(replication.shard)</shard><replica>\(replication.replica)</replica></macros>
              <zookeeper><node><host>127.0.0.1</host><port>\(replication.zooKeeperPort)</port></node>\
            <session_timeout_ms>\(Int(replication.sessionTimeout / .milliseconds(1)))</session_timeout_ms></zookeeper>
            """
        } ?? ""
        let httpsPort = try tls.map { _ in try FreePort.allocate() }
        self.httpsPort = httpsPort
        let tlsConfig = tls.map { tls in
            """
              <https_port>\(httpsPort!)</https_port>
              <openSSL><server><certificateFile>\(tls.certificate)</certificateFile><privateKeyFile>\(tls.key)</privateKeyFile>\
            <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile></server></openSSL>
            """
        } ?? ""
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        let shards = cluster.map { shard in
            let replicas = shard.replicaTCPPorts.map { port in
                "<replica><host>127.0.0.1</host><port>\(port)</port><user>\(user)</user><password>\(password)</password></replica>"
            }
            let internalReplication = shard.replicaTCPPorts.count > 1 ? "<internal_replication>true</internal_replication>" : ""
            return "      <shard>\(internalReplication)\(replicas.joined())</shard>"
        }.joined(separator: "\n")
        let config = """
            <?xml version="1.0"?>
            <yandex>
              <logger><level>information</level><log>\(directory)/server.log</log><errorlog>\(directory)/error.log</errorlog></logger>
              <listen_host>127.0.0.1</listen_host>
              <http_port>\(httpPort)</http_port>
              <tcp_port>\(self.tcpPort)</tcp_port>
            \(tlsConfig)
            \(replicationConfig)
              <path>\(directory)/data/</path>
              <tmp_path>\(directory)/data/tmp/</tmp_path>
              <user_files_path>\(directory)/data/user_files/</user_files_path>
              <format_schema_path>\(directory)/data/format_schemas/</format_schema_path>
              <users_config>\(directory)/users.xml</users_config>
              <default_profile>default</default_profile>
              <default_database>default</default_database>
              <mark_cache_size>67108864</mark_cache_size>
              <uncompressed_cache_size>67108864</uncompressed_cache_size>
              <mlock_executable>false</mlock_executable>
              <remote_servers>
                <\(clusterName)>
            \(shards)
                </\(clusterName)>
              </remote_servers>
            </yandex>
            """
        try config.write(toFile: directory + "/config.xml", atomically: true, encoding: .utf8)
        try writeUsers(password: password)
        try await start()
    }

    /// `clickhouse://USER:PASSWORD@127.0.0.1:PORT/DATABASE`, for the aggregator and `verify`:
    /// on `port` (e.g. a proxy's) instead of the HTTP port when given; over TLS on the HTTPS
    /// port with `secure`.
    public func url(database: String = "tributary", password: String? = nil, port: Int? = nil, secure: Bool = false) -> String {
        let port = port ?? (secure ? httpsPort! : httpPort)
        return "\(secure ? "clickhouse+https" : "clickhouse")://\(user):\(password ?? self.password)@127.0.0.1:\(port)/\(database)"
    }

    /// Rewrites the users file with another password for the user. ClickHouse rereads the file
    /// by itself within a few seconds, so the running server starts refusing the old one.
    public func writeUsers(password: String) throws {
        let users = """
            <?xml version="1.0"?>
            <yandex>
              <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
              <users>
                <\(user)>
                  <password>\(password)</password>
                  <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
                  <profile>default</profile>
                  <quota>default</quota>
                </\(user)>
              </users>
              <quotas><default></default></quotas>
            </yandex>
            """
        try users.write(toFile: directory + "/users.xml", atomically: true, encoding: .utf8)
    }

    public static var executable: String? {
        ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/local/bin/clickhouse-server"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Why ClickHouse tests cannot run here, or nil when they can.
    public static var unavailableReason: String? {
        executable == nil ? "clickhouse-server is not installed (apt-get install clickhouse-server)" : nil
    }

    /// Starts (or restarts) the server on the same ports and data.
    public func start() async throws {
        guard let executable = Self.executable else { throw TestingError(Self.unavailableReason!) }
        process = try ChildProcess(executable: executable, arguments: ["--config-file=\(directory)/config.xml"],
                                   logFile: directory + "/stdout.log")
        try await FreePort.waitUntilListening(httpPort, timeout: .seconds(60))
    }

    /// SIGTERM: a clean shutdown.
    public func stop() async {
        await process?.stop(signal: SIGTERM)
        process = nil
    }

    /// SIGKILL: a crash.
    public func kill() async {
        await process?.stop(signal: SIGKILL)
        process = nil
    }
}
