import Foundation

/// The files and directories Tributary makes for its data are its user's alone, whatever the
/// umask: buffers and sinks hold readings, the registry the fleet, the data directory the
/// operator token. (The systemd units set `UMask=0077`, but these programs are also run by
/// hand, from scripts and in containers.)
public enum PrivateFiles {
    /// Makes `path` (and missing parents) with mode 0700 for the last component. Returns true
    /// when it already existed with permissions for other users, which the caller should
    /// report: a directory an operator made is not changed behind their back.
    @discardableResult
    public static func makeDirectory(_ path: String) throws -> Bool {
        var info = stat()
        if stat(path, &info) == 0 {
            return info.st_mode & 0o007 != 0
        }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(path, 0o700)
        return false
    }

    /// A database file about to be opened: made with mode 0600 when missing (SQLite then gives
    /// its -wal and -shm the same), and an existing one, with its -wal and -shm, loses any
    /// permission for other users (an older version made them 0644).
    static func prepareDatabase(_ path: String) {
        guard !path.isEmpty, path != ":memory:", !path.hasPrefix("file:") else { return }
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd >= 0 {
            fchmod(fd, 0o600)
            close(fd)
        }
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            if lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_mode & 0o007 != 0 {
                chmod(file, info.st_mode & 0o770)
            }
        }
    }
}
