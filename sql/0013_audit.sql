-- The audit trail: every action that changes or reveals something (logins, users and screen
-- tokens, alerts acknowledged or silenced, SQL run, definitions changed, ledgers imported),
-- appended and never updated. Admins read it through GET /api/v1/audit and in SQL; no
-- analyst's scope database copies it, and the SQL console is read-only, so nothing in vscc
-- can change a row.
CREATE TABLE IF NOT EXISTS audit
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
ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (at, id);
