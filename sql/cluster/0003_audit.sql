-- The audit trail (see sql/0013_audit.sql), one copy on every replica.
CREATE TABLE IF NOT EXISTS {db}.audit ON CLUSTER {cluster}
(
    at       DateTime('Asia/Shanghai'),
    id       String,
    actor    String,
    role     String,
    scope    String,
    action   String,
    target   String,
    detail   String,
    address  String,
    outcome  String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/audit', '{replica}')
PARTITION BY toYYYYMM(at)
ORDER BY (at, id);
