-- The local tables of one shard, replicated: run on EVERY node (each replica of each shard),
-- after ZooKeeper, the cluster and the node's macros are configured (zookeeper.xml,
-- remote-servers.xml, macros.xml in /etc/clickhouse-server/config.d/) and before distributed.sql.
--   clickhouse-client --host NODE --multiquery < shard.sql
-- Same columns and keys as the single-node schema (../schema.sql); the engine is its replicated
-- form. Each table's ZooKeeper path holds the node's {shard} macro, so the replicas of one shard
-- share a path and copy each other's parts; {replica} names the node within its shard (it must
-- differ between the replicas of a shard). A replica created later, or one that was down,
-- fetches what it lacks from its peers by itself.
-- Never rerun this with other macros on a node that has the tables: the path is fixed at creation.

CREATE DATABASE IF NOT EXISTS tributary;

CREATE TABLE IF NOT EXISTS tributary.readings_local (
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
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tributary/readings_local', '{replica}')
PARTITION BY toYYYYMM(toDateTime(intDiv(time_ms, 1000)))
ORDER BY (gateway_id, sensor_id, metric, time_ms, batch_gateway_id, batch_epoch, batch_seq, batch_index);

CREATE TABLE IF NOT EXISTS tributary.batch_ledger_local (
    gateway_id    String,
    epoch         String,
    sequence      UInt64,
    digest        UInt64,
    reading_count UInt32,
    written_ms    Int64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tributary/batch_ledger_local', '{replica}')
ORDER BY (gateway_id, epoch, sequence);
