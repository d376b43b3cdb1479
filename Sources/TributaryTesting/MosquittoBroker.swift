import Foundation

/// A real mosquitto broker on a free loopback port, with persistence in its own directory.
/// Needs the `mosquitto` binary (Debian package `mosquitto`).
public final class MosquittoBroker: @unchecked Sendable {
    // @unchecked Sendable: `process` is only replaced by start/stop, which tests call in sequence.
    public let port: Int
    public let directory: String
    private var process: ChildProcess?

    public var url: String { "mqtt://127.0.0.1:\(port)" }

    /// Starts a broker; `directory` holds its config, log and persistence file.
    public init(directory: String) async throws {
        self.directory = directory
        port = try FreePort.allocate()
        let config = """
            listener \(port) 127.0.0.1
            # Run as root when started as root (tests in CI): otherwise mosquitto switches to its
            # own user, which cannot write this directory.
            user root
            allow_anonymous true
            persistence true
            persistence_location \(directory)/
            autosave_interval 1
            max_queued_messages 0
            log_dest file \(directory)/mosquitto.log
            """
        try config.write(toFile: directory + "/mosquitto.conf", atomically: true, encoding: .utf8)
        try await start()
    }

    public static var executable: String? {
        ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts (or restarts) the broker process on the same port and persistence file.
    public func start() async throws {
        guard let executable = Self.executable else {
            throw TestingError("mosquitto is not installed (apt-get install mosquitto)")
        }
        let process = try ChildProcess(executable: executable, arguments: ["-c", directory + "/mosquitto.conf"])
        self.process = process
        try await FreePort.waitUntilListening(port)
    }

    /// SIGTERM: mosquitto saves its persistence file and exits.
    public func stop() async {
        guard let process else { return }
        await process.stop(signal: SIGTERM)
        self.process = nil
    }

    /// SIGKILL: the broker dies without saving (a crash).
    public func kill() async {
        guard let process else { return }
        await process.stop(signal: SIGKILL)
        self.process = nil
    }

}
