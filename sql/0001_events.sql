-- Every accepted record, one row each, whether it came through POST /api/v1/events, a ledger
-- import or the simulator. The typed columns hold the `data` fields the headline metrics are
-- computed from (see CONTRACT.md); `data` keeps the whole object as sent.
--
-- Exactly-once: `seq` is the record's position in vscc's durable log. After a crash vscc asks
-- which seqs past its checkpoint already landed here and replays only the others, so plain
-- MergeTree (no ZooKeeper) is enough on one machine.
CREATE TABLE IF NOT EXISTS events
(
    seq             UInt64,
    id              String,
    kind            String,
    org             String,
    district        String,
    at              DateTime('Asia/Shanghai'),
    received_at     DateTime('Asia/Shanghai'),
    source          String,
    lon             Nullable(Float64),
    lat             Nullable(Float64),
    staff_id        String,
    class_id        String,
    appeal_id       String,
    person_id       String,
    veteran         UInt8,
    demonstration   UInt8,
    stars           UInt8,
    approved_posts  Int64,
    filled_posts    Int64,
    headcount       Int64,
    data            String
)
ENGINE = MergeTree()
PARTITION BY toYear(at)
ORDER BY (kind, org, at, seq);
