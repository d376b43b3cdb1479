import Foundation

/// A real ZooKeeper server (standalone) on a free loopback port, with its config, data and log
/// in its own directory: what replicated ClickHouse tables coordinate through. Needs Java and
/// ZooKeeper's jars (Debian package `zookeeper`, 3.8 on Debian 12); the server is started with
/// `java` directly, not through the package's service or scripts, which expect /etc and /var.
public final class ZooKeeperServer: @unchecked Sendable {
    // @unchecked Sendable: `process` is only replaced by start/stop, which tests call in sequence.
    public let directory: String
    public let port: Int
    private var process: ChildProcess?

    /// The jars the server needs, as Debian installs them (`libzookeeper-java`, `libslf4j-java`).
    static let classPath = ["zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar"]
        .map { "/usr/share/java/" + $0 }

    /// `tickTime` in ms. ClickHouse asks for its session timeout, and ZooKeeper grants it
    /// between 2 and 20 ticks: 500 ms allows the 1-10 s that tests use.
    public static let tickMilliseconds = 500

    /// Writes `zoo.cfg` and starts the server.
    public init(directory: String) async throws {
        self.directory = directory
        port = try FreePort.allocate()
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        let config = """
            tickTime=\(Self.tickMilliseconds)
            dataDir=\(directory)/data
            clientPort=\(port)
            clientPortAddress=127.0.0.1
            maxClientCnxns=0
            admin.enableServer=false
            4lw.commands.whitelist=ruok,srvr

            """
        try config.write(toFile: directory + "/zoo.cfg", atomically: true, encoding: .utf8)
        try await start()
    }

    public static var java: String? {
        ["/usr/bin/java", "/usr/local/bin/java"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Why ZooKeeper tests cannot run here, or nil when they can.
    public static var unavailableReason: String? {
        if java == nil { return "java is not installed (apt-get install zookeeper brings it)" }
        if let missing = classPath.first(where: { !FileManager.default.fileExists(atPath: $0) }) {
            return "\(missing) is missing (apt-get install zookeeper)"
        }
        return nil
    }

    /// `127.0.0.1:PORT`.
    public var address: String { "127.0.0.1:\(port)" }

    /// Starts (or restarts) the server on the same port and data.
    public func start() async throws {
        guard let java = Self.java, Self.unavailableReason == nil else { throw TestingError(Self.unavailableReason!) }
        process = try ChildProcess(
            executable: java,
            arguments: ["-Xmx128m", "-XX:+UseSerialGC", "-cp", Self.classPath.joined(separator: ":"),
                        "-Dzookeeper.jmx.log4j.disable=true",
                        "org.apache.zookeeper.server.quorum.QuorumPeerMain", directory + "/zoo.cfg"],
            logFile: directory + "/server.log")
        // The JVM takes a few seconds to start on a busy machine, and the port opens before the
        // server has loaded its data: until then it closes every connection, and a ClickHouse
        // server asked to create a replicated table fails. Wait until `srvr` names its mode.
        let deadline = ContinuousClock.now + .seconds(60)
        while !isServing {
            guard ContinuousClock.now < deadline else {
                throw TestingError("ZooKeeper on 127.0.0.1:\(port) does not serve after 60 s; see \(directory)/server.log")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Whether the server answers the `srvr` command as a serving server (`Mode: standalone`).
    public var isServing: Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected, send(fd, "srvr", 4, 0) == 4 else { return false }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { break }
            answer += buffer[..<n]
        }
        return String(decoding: answer, as: UTF8.self).contains("Mode: ")
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
