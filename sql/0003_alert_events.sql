-- Every alert state change and every notification, for duty-officer history and for restoring
-- firing alerts after a restart.
CREATE TABLE IF NOT EXISTS alert_events
(
    at          DateTime('Asia/Shanghai'),
    fingerprint String,
    rule        String,
    node        String,
    state       String,
    severity    String,
    value       Nullable(Float64),
    summary     String,
    actor       String,
    comment     String
)
ENGINE = MergeTree()
PARTITION BY toYear(at)
ORDER BY (fingerprint, at);
