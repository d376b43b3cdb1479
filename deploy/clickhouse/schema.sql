-- Tributary's tables on a single ClickHouse node. The aggregator creates them itself on start
-- when they are missing (the same statements); this file is for review and for creating them
-- by hand:  clickhouse-client --multiquery < schema.sql
--
-- Exactly-once reads: a retried insert can leave a second copy of a batch's rows until
-- ClickHouse merges it away. Query with FINAL to see every reading exactly once:
--   SELECT ... FROM tributary.readings FINAL WHERE ...

CREATE DATABASE IF NOT EXISTS tributary;

CREATE TABLE IF NOT EXISTS tributary.readings (
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
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(time_ms, 1000)))
ORDER BY (gateway_id, sensor_id, metric, time_ms, batch_gateway_id, batch_epoch, batch_seq, batch_index);

CREATE TABLE IF NOT EXISTS tributary.batch_ledger (
    gateway_id    String,
    epoch         String,
    sequence      UInt64,
    digest        UInt64,
    reading_count UInt32,
    written_ms    Int64
) ENGINE = ReplacingMergeTree()
ORDER BY (gateway_id, epoch, sequence);
