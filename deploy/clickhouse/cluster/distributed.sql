-- The Distributed tables over the shards' local tables, on every node an aggregator writes to
-- (after shard.sql ran on every node). The cluster is `tributary`, as declared in
-- remote-servers.xml. The aggregator then uses the same URL form as for a single node:
--   sink: clickhouse://tributary:PASSWORD@THIS-NODE:8123/tributary
-- It writes with insert_distributed_sync=1, so a batch is acknowledged only once every shard
-- holds its rows. Each shard's rows go to one of its replicas (internal_replication=true), and
-- the replicas copy them among themselves; with clickhouse.insert_quorum: 2 in the aggregator's
-- config, an insert returns only once two replicas of each shard hold it (docs/sinks.md).
-- Rows are placed by gateway and sensor: every copy of a reading lands on the same shard, where
-- FINAL collapses it.
--   clickhouse-client --host NODE --multiquery < distributed.sql

CREATE DATABASE IF NOT EXISTS tributary;

CREATE TABLE IF NOT EXISTS tributary.readings AS tributary.readings_local
ENGINE = Distributed(tributary, tributary, readings_local, cityHash64(gateway_id, sensor_id));

CREATE TABLE IF NOT EXISTS tributary.batch_ledger AS tributary.batch_ledger_local
ENGINE = Distributed(tributary, tributary, batch_ledger_local, cityHash64(gateway_id));
