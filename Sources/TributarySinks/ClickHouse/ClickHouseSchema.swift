import Foundation

/// The ClickHouse tables, as DDL both Debian's 18.16 and current releases accept. The same
/// statements are shipped in `deploy/clickhouse/` (a test keeps them equal).
///
/// Retries never double a reading: `readings` is a ReplacingMergeTree whose sorting key ends
/// with the reading's identity (the batch identity and the reading's position in it), so a
/// batch written twice (a retry after a lost answer, or two aggregators racing) collapses to one
/// copy in merges, and at once in queries with `FINAL`. The same goes for `batch_ledger`.
public enum ClickHouseSchema {
    /// Tables on a single node, or the local tables of each shard with `suffix: "_local"`.
    /// `replicated`: the engines' replicated form, for a cluster whose shards have replicas; each
    /// table's ZooKeeper path holds the node's `{shard}` macro and its replica name is `{replica}`.
    public static func tables(database: String, suffix: String = "", replicated: Bool = false) -> [String] {
        func engine(_ table: String) -> String {
            replicated
                ? "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/\(database)/\(table)\(suffix)', '{replica}')"
                : "ReplacingMergeTree()"
        }
        return [
            "CREATE DATABASE IF NOT EXISTS \(database)",
            """
            CREATE TABLE IF NOT EXISTS \(database).readings\(suffix) (
                gateway_id       String,
                sensor_id        String,
                metric           String,
                time_ms          Int64,              -- event time, ms since the Unix epoch
                received_ms      Int64,              -- when the agent received it
                value            Nullable(Float64),  -- numeric readings (number and integer)
                value_int        Nullable(Int64),    -- integer and boolean (0/1) readings, exact
                value_text       Nullable(String),   -- text readings
                value_type       String,             -- number | integer | boolean | text
                unit             Nullable(String),
                labels           Nullable(String),   -- JSON object, or NULL
                topic            String,
                batch_gateway_id String,             -- the identity of the batch that carried it
                batch_epoch      String,
                batch_seq        UInt64,
                batch_index      UInt32              -- its position in that batch
            ) ENGINE = \(engine("readings"))
            PARTITION BY toYYYYMM(toDateTime(intDiv(time_ms, 1000)))
            ORDER BY (gateway_id, sensor_id, metric, time_ms, batch_gateway_id, batch_epoch, batch_seq, batch_index)
            """,
            """
            CREATE TABLE IF NOT EXISTS \(database).batch_ledger\(suffix) (
                gateway_id    String,
                epoch         String,
                sequence      UInt64,
                digest        UInt64,
                reading_count UInt32,
                written_ms    Int64
            ) ENGINE = \(engine("batch_ledger"))
            ORDER BY (gateway_id, epoch, sequence)
            """,
        ]
    }

    /// The `Distributed` tables over the shards' local tables, for the node(s) the aggregator
    /// writes to. Rows are placed by gateway and sensor, so a series (and every retry of a
    /// reading) always lands on the same shard, where `FINAL` can collapse it.
    public static func distributed(database: String, cluster: String) -> [String] {
        [
            "CREATE DATABASE IF NOT EXISTS \(database)",
            """
            CREATE TABLE IF NOT EXISTS \(database).readings AS \(database).readings_local
            ENGINE = Distributed(\(cluster), \(database), readings_local, cityHash64(gateway_id, sensor_id))
            """,
            """
            CREATE TABLE IF NOT EXISTS \(database).batch_ledger AS \(database).batch_ledger_local
            ENGINE = Distributed(\(cluster), \(database), batch_ledger_local, cityHash64(gateway_id))
            """,
        ]
    }

    /// The columns the sink writes, with the types it writes them as (RowBinary has no types of
    /// its own: bytes meant for one type are misread as another), per table.
    public static let columns: [(table: String, columns: [(name: String, type: String)])] = [
        ("readings", [("gateway_id", "String"), ("sensor_id", "String"), ("metric", "String"), ("time_ms", "Int64"),
                      ("received_ms", "Int64"), ("value", "Nullable(Float64)"), ("value_int", "Nullable(Int64)"),
                      ("value_text", "Nullable(String)"), ("value_type", "String"), ("unit", "Nullable(String)"),
                      ("labels", "Nullable(String)"), ("topic", "String"), ("batch_gateway_id", "String"),
                      ("batch_epoch", "String"), ("batch_seq", "UInt64"), ("batch_index", "UInt32")]),
        ("batch_ledger", [("gateway_id", "String"), ("epoch", "String"), ("sequence", "UInt64"), ("digest", "UInt64"),
                          ("reading_count", "UInt32"), ("written_ms", "Int64")]),
    ]

    /// What differs between `columns` and the tables' columns as ClickHouse lists them (rows of
    /// table, name, type), or nil when every column the sink writes is there with its type.
    /// Other columns (an operator's MATERIALIZED or DEFAULT ones) are no difference.
    public static func columnProblem(database: String, found rows: [[String?]]) -> String? {
        var found: [String: [String: String]] = [:]
        for row in rows where row.count == 3 {
            if let table = row[0], let name = row[1], let type = row[2] { found[table, default: [:]][name] = type }
        }
        var problems: [String] = []
        for (table, expected) in columns {
            for (name, type) in expected where found[table]?[name] != type {
                problems.append("\(database).\(table).\(name) is \(found[table]?[name] ?? "missing"), not \(type)")
            }
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// Statements as a `.sql` file: each ends with `;` on its own line's end.
    public static func file(_ statements: [String]) -> String {
        statements.map { $0 + ";\n" }.joined(separator: "\n")
    }

    /// Splits a `.sql` file into statements (on `;` at a line's end), dropping `--` comment lines
    /// that stand alone.
    public static func statements(inFile text: String) -> [String] {
        var statements: [String] = []
        var current: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if current.isEmpty && (trimmed.isEmpty || trimmed.hasPrefix("--")) { continue }
            if trimmed.hasSuffix(";") {
                current.append(line[..<line.lastIndex(of: ";")!])
                statements.append(current.joined(separator: "\n"))
                current = []
            } else {
                current.append(line)
            }
        }
        if !current.isEmpty { statements.append(current.joined(separator: "\n")) }
        return statements
    }
}
