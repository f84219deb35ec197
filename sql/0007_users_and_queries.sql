-- Users, revocable screen tokens, and the analysts' query log and saved queries.
--
-- Users and tokens change rarely and are read into memory at start-up and every few seconds
-- after (so a revocation made by another instance or by the CLI takes effect everywhere). Rows
-- are never updated in place: a change is a new row with a higher `version`, and the reader
-- takes the latest per key (argMax), which works before ReplacingMergeTree has merged.
CREATE TABLE IF NOT EXISTS users
(
    name           String,
    role           String,
    scope          String,
    password_hash  String,
    disabled       UInt8,
    changed_at     DateTime('Asia/Shanghai'),
    changed_by     String,
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name;

CREATE TABLE IF NOT EXISTS screen_tokens
(
    id          String,
    user        String,
    label       String,
    scope       String,
    issued_at   DateTime('Asia/Shanghai'),
    expires_at  DateTime('Asia/Shanghai'),
    revoked     UInt8,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

CREATE TABLE IF NOT EXISTS query_log
(
    id           String,
    user         String,
    scope        String,
    sql          String,
    started_at   DateTime('Asia/Shanghai'),
    duration_ms  UInt64,
    rows         UInt64,
    outcome      String,
    error        String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(started_at)
ORDER BY (user, started_at);

CREATE TABLE IF NOT EXISTS saved_queries
(
    user      String,
    name      String,
    sql       String,
    saved_at  DateTime('Asia/Shanghai'),
    deleted   UInt8,
    version   UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (user, name);
