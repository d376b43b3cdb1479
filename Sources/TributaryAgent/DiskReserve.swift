import Foundation
import Logging
import TributaryBuffer
import TributarySQLite

#if canImport(Glibc)
import Glibc
#endif

/// Space held back on the buffer's disk for the moment the disk fills up.
///
/// With the disk full, SQLite cannot even record an acknowledgement (a delete writes WAL
/// frames, and the checkpoint that recycles the WAL may need to grow the file), so the buffer
/// could never drain. Releasing this file gives those writes room; from then on ingest keeps
/// that much room free (see `headroomBytes`), and the file is taken again once the disk has
/// room for it.
struct DiskReserve {
    let path: String
    let bytes: Int64

    init(path: String, bytes: Int64) {
        self.path = path
        self.bytes = bytes
    }

    init(config: AgentConfig) {
        self.init(path: config.diskReservePath, bytes: config.buffer.diskReserveBytes)
    }

    /// Whoever meets a full disk first (ingest or the uploader) releases the reserve.
    func releaseIfDiskFull(_ error: any Error, logger: Logger, gateway: String) {
        guard (error as? SQLiteError)?.isDiskFull == true, release() else { return }
        logger.error("buffer disk is full: released the disk reserve so acknowledgements can still be recorded", metadata: [
            "gateway": "\(gateway)", "reserve_bytes": "\(bytes)",
        ])
    }

    /// Room the buffer can still write into: free pages inside its file (reused without growing
    /// it) plus free space on its disk. While the reserve file is released, ingest keeps this
    /// above `keptFree`, so room stays free for acknowledgements. (The buffer has one SQLite connection, so its WAL is checkpointed
    /// fully and reused from the start: transactions that reuse free pages need no new disk.)
    func headroomBytes(buffer: BufferStore) -> Int64 {
        let inFile = (try? buffer.freeBytesInFile()) ?? 0
        return inFile + (Self.availableBytes(near: buffer.path) ?? 0)
    }

    /// What ingest leaves free while the reserve file is released: half its size. Recording an
    /// acknowledgement takes a few pages, and a checkpoint grows the file by at most the WAL's
    /// 1 MiB; the other half lets a small buffer go on working on a disk filled by others.
    var keptFree: Int64 { bytes / 2 }

    /// A plain stat(2): the committer asks before every group, and Foundation's
    /// `attributesOfItem` also looked up the file owner's name (5% of the agent's CPU).
    var isHeld: Bool {
        var info = stat()
        guard bytes > 0, stat(path, &info) == 0 else { return false }
        return Int64(info.st_size) >= bytes
    }

    /// Allocates the reserve (really: `posix_fallocate`, not a sparse file). False when the
    /// disk has no room for it; a partial file is removed.
    @discardableResult
    func take() -> Bool {
        guard bytes > 0 else { return true }
        if isHeld { return true }
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        guard fd >= 0 else { return false }
        let rc = posix_fallocate(fd, 0, off_t(bytes))
        close(fd)
        if rc != 0 { unlink(path) }
        return rc == 0
    }

    /// Frees the reserve; true if it was held.
    @discardableResult
    func release() -> Bool {
        let held = isHeld
        unlink(path)
        return held
    }

    /// Free bytes on the file system that holds `path`, for unprivileged users.
    static func availableBytes(near path: String) -> Int64? {
        var stats = statvfs()
        guard statvfs((path as NSString).deletingLastPathComponent, &stats) == 0 else { return nil }
        return Int64(stats.f_bavail) * Int64(stats.f_frsize)
    }
}
