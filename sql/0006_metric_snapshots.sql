-- Daily snapshots of every metric for the city, districts and streets (the history behind the
-- trend lines and target projections), and the record of every batch job run.
CREATE TABLE IF NOT EXISTS metric_snapshots
(
    day     Date,
    node    String,
    metric  String,
    value   Nullable(Float64),
    num     Int64,
    den     Nullable(Int64),
    status  String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYear(day)
ORDER BY (metric, node, day);

CREATE TABLE IF NOT EXISTS job_runs
(
    job       String,
    started   DateTime('Asia/Shanghai'),
    ended     DateTime('Asia/Shanghai'),
    rows      UInt64,
    outcome   String
)
ENGINE = MergeTree()
ORDER BY (job, started);
