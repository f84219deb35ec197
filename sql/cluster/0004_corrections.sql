-- Corrections and withdrawals (see sql/0014_corrections.sql): the same columns on every shard's
-- `events_local` and on the Distributed `events` over them, and the view of the effective
-- records (GLOBAL NOT IN: a correction may move a record to another district, hence shard).
ALTER TABLE {db}.events_local ON CLUSTER {cluster}
    ADD COLUMN version UInt32 DEFAULT 1,
    ADD COLUMN sign Int8 DEFAULT 1,
    ADD COLUMN cancels UInt64 DEFAULT 0,
    ADD COLUMN actor String DEFAULT '',
    ADD COLUMN reason String DEFAULT '';

ALTER TABLE {db}.events ON CLUSTER {cluster}
    ADD COLUMN version UInt32 DEFAULT 1,
    ADD COLUMN sign Int8 DEFAULT 1,
    ADD COLUMN cancels UInt64 DEFAULT 0,
    ADD COLUMN actor String DEFAULT '',
    ADD COLUMN reason String DEFAULT '';

CREATE VIEW IF NOT EXISTS {db}.events_effective ON CLUSTER {cluster} AS
SELECT * FROM {db}.events
WHERE sign = 1 AND (id, version) GLOBAL NOT IN (SELECT id, version FROM {db}.events WHERE sign = -1);
