import TributaryClickHouse
import TributaryWire

/// What the sink must do differently for the server it writes to, read once at start (and again
/// after the server refused a setting or the partition limit): its release, from
/// `SELECT version()`, and its `max_partitions_per_insert_block` for the sink's user.
struct ClickHouseServerProfile: Sendable, Equatable {
    var version: ClickHouseVersion
    /// The most partitions one insert may touch; nil when there is no such limit (18.16 has
    /// none; 0 means none on later releases).
    var maxPartitionsPerInsert: Int?
    /// Whether the server decodes zstd request bodies (asked, not assumed from the release:
    /// 18.16 does not).
    var acceptsZstd: Bool

    init(version: ClickHouseVersion, maxPartitionsPerInsert: Int?, acceptsZstd: Bool = false) {
        self.version = version
        self.maxPartitionsPerInsert = maxPartitionsPerInsert
        self.acceptsZstd = acceptsZstd
    }

    /// `async_insert` exists since 21.11 and is on by default since 26.2; 18.16 refuses every
    /// setting it does not know (code 115), so it gets none.
    static let asyncInsertSince = ClickHouseVersion(21, 11)
    /// `insert_distributed_sync` was renamed `distributed_foreground_insert` in 23.11, the old
    /// name kept as an alias (26.9 still takes it). The new name goes to releases from 24.1 on,
    /// a margin past the rename; the old one to the rest, 18.16 included.
    static let distributedForegroundInsertSince = ClickHouseVersion(24, 1)

    /// The settings every insert is sent with: `base` (the sink's, written with the names 18.16
    /// knows) adapted to this server.
    func insertSettings(_ base: [String: String]) -> [String: String] {
        var settings = base
        if version >= Self.distributedForegroundInsertSince, let sync = settings.removeValue(forKey: "insert_distributed_sync") {
            settings["distributed_foreground_insert"] = sync
        }
        // Each insert would otherwise wait in the server's queue for other inserts to join it
        // (up to 200 ms), though the sink already coalesces what waits; and the ledger row must
        // follow readings that are in the table, not queued.
        if version >= Self.asyncInsertSince { settings["async_insert"] = "0" }
        return settings
    }

    /// The most calendar months (UTC) of readings one insert carries, or nil for no split.
    /// `readings` is partitioned by the month of `time_ms` in the server's time zone; a UTC
    /// month overlaps at most two of those (a zone is less than a day off UTC), so half the
    /// limit keeps every insert within it whatever the server's zone.
    var monthsPerInsert: Int? {
        guard let limit = maxPartitionsPerInsert, limit > 0 else { return nil }
        return max(1, limit / 2)
    }

    /// Reads the profile of the server behind `client`.
    static func read(client: ClickHouseClient) async throws(ClickHouseError) -> ClickHouseServerProfile {
        let text = try await client.scalar(versionQuery) ?? ""
        guard var profile = ClickHouseServerProfile(version: text, limit: try await client.select(limitQuery)) else {
            throw ClickHouseError(.server, "ClickHouse at \(client.endpoint) answered version() with '\(text)', not a release number")
        }
        profile.acceptsZstd = await client.acceptsContentEncoding("zstd", selectOne: Compression.compress(Array("SELECT 1".utf8), encoding: .zstd))
        return profile
    }

    static let versionQuery = "SELECT version()"
    /// No row on 18.16, which has no such limit.
    static let limitQuery = "SELECT value FROM system.settings WHERE name = 'max_partitions_per_insert_block'"

    /// From the answers to `versionQuery` and `limitQuery`.
    init?(version text: String, limit rows: [[String?]]) {
        guard let version = ClickHouseVersion(text) else { return nil }
        let limit = rows.first?.first.flatMap { $0.flatMap { Int($0) } }
        self.init(version: version, maxPartitionsPerInsert: limit.flatMap { $0 > 0 ? $0 : nil })
    }
}
