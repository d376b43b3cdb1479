import Foundation

/// A real mosquitto broker on a free loopback port, with persistence in its own directory.
/// Needs the `mosquitto` binary (Debian package `mosquitto`). By default it is plain MQTT and
/// anonymous; `Security` adds a TLS listener and a password file.
public final class MosquittoBroker: @unchecked Sendable {
    // @unchecked Sendable: `process` is only replaced by start/stop, which tests call in sequence.
    public let port: Int
    public let directory: String
    public let security: Security
    private var process: ChildProcess?

    /// How clients must connect: TLS, certificates, passwords.
    public struct Security: Sendable {
        /// A TLS listener instead of a plain one.
        public var tls: TLS?
        /// Users and their passwords (`mosquitto_passwd`); when set, anonymous clients are refused.
        public var passwords: [String: String] = [:]

        public struct TLS: Sendable {
            /// The CA whose client certificates the broker accepts.
            public var caFile: String
            /// The broker's own certificate and key.
            public var certificateFile: String
            public var keyFile: String
            /// Clients must present a certificate signed by `caFile`.
            public var requireCertificate = false
            /// A client certificate's common name becomes the client's username (no password asked).
            public var useIdentityAsUsername = false

            public init(caFile: String, certificateFile: String, keyFile: String,
                        requireCertificate: Bool = false, useIdentityAsUsername: Bool = false) {
                self.caFile = caFile
                self.certificateFile = certificateFile
                self.keyFile = keyFile
                self.requireCertificate = requireCertificate
                self.useIdentityAsUsername = useIdentityAsUsername
            }
        }

        public init(tls: TLS? = nil, passwords: [String: String] = [:]) {
            self.tls = tls
            self.passwords = passwords
        }
    }

    public var url: String { "\(security.tls == nil ? "mqtt" : "mqtts")://127.0.0.1:\(port)" }

    /// Starts a broker; `directory` holds its config, log, password file and persistence file.
    public init(directory: String, security: Security = .init()) async throws {
        self.directory = directory
        self.security = security
        port = try FreePort.allocate()
        var lines = [
            "listener \(port) 127.0.0.1",
            "# Run as root when started as root (tests in CI): otherwise mosquitto switches to its",
            "# own user, which cannot write this directory.",
            "user root",
            "persistence true",
            "persistence_location \(directory)/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "log_dest file \(directory)/mosquitto.log",
        ]
        if let tls = security.tls {
            lines += [
                "cafile \(tls.caFile)",
                "certfile \(tls.certificateFile)",
                "keyfile \(tls.keyFile)",
                "tls_version tlsv1.2",
                "require_certificate \(tls.requireCertificate)",
                "use_identity_as_username \(tls.useIdentityAsUsername)",
            ]
        }
        if security.passwords.isEmpty && !(security.tls?.useIdentityAsUsername ?? false) {
            lines.append("allow_anonymous true")
        } else {
            lines.append("allow_anonymous false")
        }
        if !security.passwords.isEmpty {
            let file = directory + "/passwords"
            for (index, (user, password)) in security.passwords.sorted(by: { $0.key < $1.key }).enumerated() {
                try await Self.mosquittoPasswd((index == 0 ? ["-c"] : []) + ["-b", file, user, password], directory: directory)
            }
            lines.append("password_file \(file)")
        }
        try lines.joined(separator: "\n").write(toFile: directory + "/mosquitto.conf", atomically: true, encoding: .utf8)
        try await start()
    }

    public static var executable: String? {
        ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private static func mosquittoPasswd(_ arguments: [String], directory: String) async throws {
        let log = directory + "/mosquitto_passwd.log"
        let process = try ChildProcess(executable: "/usr/bin/mosquitto_passwd", arguments: arguments, logFile: log)
        let status = await process.wait()
        guard status == 0 else {
            throw TestingError("mosquitto_passwd failed (\(status)): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
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

    /// Everything the broker logged so far (connections, refusals, TLS errors).
    public var log: String { (try? String(contentsOfFile: directory + "/mosquitto.log", encoding: .utf8)) ?? "" }

    /// SIGTERM: mosquitto saves its persistence file and exits.
    /// Freezes (SIGSTOP) or resumes (SIGCONT) the broker: a broker stalled on its disk.
    public func pause(_ paused: Bool) {
        if let process { _ = Glibc.kill(process.pid, paused ? SIGSTOP : SIGCONT) }
    }

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
