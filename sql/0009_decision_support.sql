-- Decision-support tables written by the batch jobs (vscc etl run progress|league|freshness,
-- nightly inside serve). A re-run for the same day replaces that day's rows (Replacing key).

-- Every node × metric of a snapshot day: value, target, deadline, the value projected to the
-- deadline from the last 30 days, the gap to the target and the status.
CREATE TABLE IF NOT EXISTS target_progress
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
ENGINE = ReplacingMergeTree()
PARTITION BY toYear(day)
ORDER BY (day, metric, node);

-- Rankings of a snapshot day: districts city-wide (within = the city), streets city-wide, and
-- streets within their district (within = the district). Rank 1 is best; ties share a rank.
CREATE TABLE IF NOT EXISTS league_tables
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
ENGINE = ReplacingMergeTree()
PARTITION BY toYear(day)
ORDER BY (day, metric, level, within, node);

-- Per node (its subtree) and record kind ('*': any), the newest record and how many days ago
-- it was received, as of the run's day.
CREATE TABLE IF NOT EXISTS data_freshness
(
    day            Date,
    node           String,
    kind           String,
    last_at        DateTime('Asia/Shanghai'),
    last_received  DateTime('Asia/Shanghai'),
    days_since     UInt32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYear(day)
ORDER BY (day, node, kind);
