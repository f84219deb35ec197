-- The schema on a ClickHouse cluster (`clickhouse.cluster`): the same tables and columns as
-- the single-server migrations 0001–0011 leave, on every server of the cluster (ON CLUSTER).
-- vscc puts its database for {db} and the cluster's name for {cluster}; {shard} and {replica}
-- are each server's own macros.
--
-- `events` is sharded by district: each shard keeps its districts' rows in `events_local`,
-- replicated within the shard; `events` reads every shard through a Distributed table. vscc's
-- writer inserts into each shard's `events_local` itself, with insert_quorum, routing a row by
-- toUInt64OrZero(district) modulo the number of shards — the Distributed table's own key, so
-- that rows inserted through `events` land where vscc would put them.
--
-- Every other table is small and kept whole on every server: one replica set spanning the
-- cluster (ZooKeeper path without {shard}).
CREATE TABLE IF NOT EXISTS {db}.events_local ON CLUSTER {cluster}
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
    subject         String,
    num_keys        Array(String),
    num_values      Array(Int64),
    data            String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/events_local', '{replica}')
PARTITION BY toYear(at)
ORDER BY (kind, org, at, seq);

CREATE TABLE IF NOT EXISTS {db}.events ON CLUSTER {cluster} AS {db}.events_local
ENGINE = Distributed({cluster}, {db}, events_local, toUInt64OrZero(district));

CREATE TABLE IF NOT EXISTS {db}.org_nodes ON CLUSTER {cluster}
(
    code        String,
    name        String,
    level       String,
    parent      String,
    ancestors   Array(String)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/org_nodes', '{replica}')
ORDER BY code;

CREATE TABLE IF NOT EXISTS {db}.alert_events ON CLUSTER {cluster}
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/alert_events', '{replica}')
PARTITION BY toYear(at)
ORDER BY (fingerprint, at);

CREATE TABLE IF NOT EXISTS {db}.alert_notifications ON CLUSTER {cluster}
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/alert_notifications', '{replica}')
PARTITION BY toYear(at)
ORDER BY (id, at);

CREATE TABLE IF NOT EXISTS {db}.alert_silences ON CLUSTER {cluster}
(
    at          DateTime('Asia/Shanghai'),
    id          String,
    created_by  String,
    spec        String,
    deleted     UInt8
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/alert_silences', '{replica}')
ORDER BY (id, at);

CREATE TABLE IF NOT EXISTS {db}.metric_snapshots ON CLUSTER {cluster}
(
    day     Date,
    node    String,
    metric  String,
    value   Nullable(Float64),
    num     Int64,
    den     Nullable(Int64),
    status  String,
    overdue Nullable(Int64)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/metric_snapshots', '{replica}')
PARTITION BY toYear(day)
ORDER BY (metric, node, day);

CREATE TABLE IF NOT EXISTS {db}.job_runs ON CLUSTER {cluster}
(
    job       String,
    started   DateTime('Asia/Shanghai'),
    ended     DateTime('Asia/Shanghai'),
    rows      UInt64,
    outcome   String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/job_runs', '{replica}')
ORDER BY (job, started);

CREATE TABLE IF NOT EXISTS {db}.users ON CLUSTER {cluster}
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/users', '{replica}', version)
ORDER BY name;

CREATE TABLE IF NOT EXISTS {db}.screen_tokens ON CLUSTER {cluster}
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/screen_tokens', '{replica}', version)
ORDER BY id;

CREATE TABLE IF NOT EXISTS {db}.query_log ON CLUSTER {cluster}
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/query_log', '{replica}')
PARTITION BY toYYYYMM(started_at)
ORDER BY (user, started_at);

CREATE TABLE IF NOT EXISTS {db}.saved_queries ON CLUSTER {cluster}
(
    user      String,
    name      String,
    sql       String,
    saved_at  DateTime('Asia/Shanghai'),
    deleted   UInt8,
    version   UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/saved_queries', '{replica}', version)
ORDER BY (user, name);

CREATE TABLE IF NOT EXISTS {db}.imports ON CLUSTER {cluster}
(
    import_no   UInt32,
    file        String,
    family      String,
    format      String,
    by          String,
    started     DateTime('Asia/Shanghai'),
    ended       DateTime('Asia/Shanghai'),
    rows        UInt64,
    accepted    UInt64,
    duplicates  UInt64,
    rejected    UInt64,
    outcome     String,
    error       String,
    version     UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/imports', '{replica}', version)
ORDER BY import_no;

CREATE TABLE IF NOT EXISTS {db}.target_progress ON CLUSTER {cluster}
(
    day        Date,
    node       String,
    metric     String,
    value      Nullable(Float64),
    target     Float64,
    due        Nullable(Date),
    projected  Nullable(Float64),
    gap        Nullable(Float64),
    status     String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/target_progress', '{replica}')
PARTITION BY toYear(day)
ORDER BY (day, metric, node);

CREATE TABLE IF NOT EXISTS {db}.league_tables ON CLUSTER {cluster}
(
    day     Date,
    metric  String,
    level   String,
    within  String,
    node    String,
    value   Float64,
    rank    UInt32,
    of      UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/league_tables', '{replica}')
PARTITION BY toYear(day)
ORDER BY (day, metric, level, within, node);

CREATE TABLE IF NOT EXISTS {db}.data_freshness ON CLUSTER {cluster}
(
    day            Date,
    node           String,
    kind           String,
    last_at        DateTime('Asia/Shanghai'),
    last_received  DateTime('Asia/Shanghai'),
    days_since     UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}/data_freshness', '{replica}')
PARTITION BY toYear(day)
ORDER BY (day, node, kind);
