#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// An exclusive lock on the agent's data directory, held for the life of the process.
///
/// Two agents on one buffer (a second one started by hand beside the service) would both seal
/// and send its batches and both count its readings: the review found 35 duplicates of 12,725
/// and a trapped agent. The lock file holds the holder's PID, so the second agent can say who
/// has it. The kernel drops a `flock` when its holder exits, however it exits, so a crash never
/// leaves a stale lock behind.
public final class DataDirectoryLock: @unchecked Sendable {
    // @unchecked Sendable: `descriptor` is written in init and in `release`, which its owner
    // calls once, at shutdown.
    public let path: String
    private var descriptor: Int32

    public init(directory: String, program: String) throws(AgentStartError) {
        path = directory + "/\(program).lock"
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw AgentStartError(message: "cannot open the lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(descriptor)
            guard reason == EWOULDBLOCK else {
                throw AgentStartError(message: "cannot lock \(path): \(String(cString: strerror(reason)))")
            }
            var error = AgentStartError(message: "another \(program) (PID \(holder.isEmpty ? "unknown" : holder)) is using data_dir \(directory); "
                                        + "two agents on one buffer would send its batches twice. Stop it first, or give this one its own data_dir")
            error.holderPID = Int32(holder) ?? 0
            throw error
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = pid.withCString { write(descriptor, $0, strlen($0)) }
    }

    /// Lets the directory go (also done by the kernel when the process exits).
    public func release() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}
