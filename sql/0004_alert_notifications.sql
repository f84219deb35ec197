-- The notification log: one row per delivery attempt outcome. A notification is delivered
-- at least once: after a restart, notifications whose last row is not 'delivered' are retried.
CREATE TABLE IF NOT EXISTS alert_notifications
(
    at           DateTime('Asia/Shanghai'),
    id           String,
    fingerprint  String,
    target       String,
    level        UInt8,
    kind         String,
    url          String,
    payload      String,
    status       String,
    attempts     UInt32,
    error        String
)
ENGINE = MergeTree()
PARTITION BY toYear(at)
ORDER BY (id, at);
