-- Corrections and withdrawals (see sql/0014_corrections.sql): the same columns on every shard's
-- `events_local`, the Distributed `events` over them made again with them (ClickHouse alters a
-- Distributed table ON CLUSTER only when it is replicated), and the view of the effective
-- records (GLOBAL NOT IN: a correction may move a record to another district, hence shard).
ALTER TABLE {db}.events_local ON CLUSTER {cluster}
    ADD COLUMN version UInt32 DEFAULT toUInt32(notEmpty(id)),
    ADD COLUMN sign Int8 DEFAULT toInt8(notEmpty(id)),
    ADD COLUMN cancels UInt64,
    ADD COLUMN actor String,
    ADD COLUMN reason String;

-- (The defaults are written as in sql/0014_corrections.sql, and for the same reason. The parts
-- stored before are not written again here: 18.16 fails OPTIMIZE … ON CLUSTER of a replicated
-- table with "Unknown log entry type".)
DROP TABLE IF EXISTS {db}.events ON CLUSTER {cluster};

CREATE TABLE IF NOT EXISTS {db}.events ON CLUSTER {cluster} AS {db}.events_local
ENGINE = Distributed({cluster}, {db}, events_local, toUInt64OrZero(district));

CREATE VIEW IF NOT EXISTS {db}.events_effective ON CLUSTER {cluster} AS
SELECT * FROM {db}.events
WHERE sign = 1 AND (id, version) GLOBAL NOT IN (SELECT id, version FROM {db}.events WHERE sign = -1);

-- `imports` is one replica set over every server: altered on this one, the change reaches the
-- others through ZooKeeper (ON CLUSTER would alter it once per shard, and the second fails:
-- "column with this name already exists"; 18.16 has no ADD COLUMN IF NOT EXISTS).
ALTER TABLE {db}.imports
    ADD COLUMN corrected UInt64,
    ADD COLUMN withdrawn UInt64;
