import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What identifies one version of a file, to notice it was rewritten or replaced without
/// reading it: any of these changes then (a copy that keeps the modification time still gets a
/// new inode or change time). Nil when the file cannot be looked at.
public struct FileStamp: Equatable, Sendable {
    let inode: UInt64, size: Int64, modifiedS: Int, modifiedNs: Int, changedS: Int, changedNs: Int

    public init?(_ path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedS = info.st_mtim.tv_sec
        modifiedNs = info.st_mtim.tv_nsec
        changedS = info.st_ctim.tv_sec
        changedNs = info.st_ctim.tv_nsec
    }
}

/// A file looked at now and then (at most once per `interval`), to reread it when it was
/// rewritten, replaced or removed: the aggregator's gateway token file, the agent's token file.
public final class FileWatch: Sendable {
    public enum Change: Sendable, Equatable {
        /// Rewritten or replaced since the last look: read it again.
        case rewritten
        /// Gone (or no longer reachable).
        case gone
    }

    public let path: String
    private let interval: Duration
    /// The version last looked at, good or not (so a broken file is reported once), and when.
    private let seen: Mutex<(stamp: FileStamp?, checkedAt: ContinuousClock.Instant)>

    /// Takes the file as it is now as seen.
    public init(path: String, interval: Duration = .seconds(1)) {
        self.path = path
        self.interval = interval
        seen = Mutex((FileStamp(path), .now))
    }

    /// Nil when it is not time to look yet, or the file is as it was last time.
    public func change() -> Change? {
        seen.withLock { seen in
            guard ContinuousClock.now - seen.checkedAt >= interval else { return nil }
            seen.checkedAt = .now
            let stamp = FileStamp(path)
            guard stamp != seen.stamp else { return nil }
            seen.stamp = stamp
            return stamp == nil ? .gone : .rewritten
        }
    }
}
