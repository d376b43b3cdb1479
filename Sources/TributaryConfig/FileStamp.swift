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
