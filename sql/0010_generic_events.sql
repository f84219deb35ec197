-- One row shape for every record kind (issue #15): the kind's definition file says which
-- `data` field is the subject (staff, class, appeal, person …) and which are counts or flags;
-- those are kept as the subject and as named numbers, and `data` keeps the whole object as sent.
-- A new kind is a file, not a column. Analysts read friendly per-kind views (kind_*) built from
-- the definitions.
--
-- Every existing row is carried over: the typed columns of 0001 become the subject and the
-- named numbers of their kind. The typed table stays as events_typed_0009 (drop it once the
-- figures are checked). vscc drops the scope copies' materialised views before this runs and
-- builds them again with the new columns.
DROP TABLE IF EXISTS events_generic;

CREATE TABLE events_generic
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
ENGINE = MergeTree()
PARTITION BY toYear(at)
ORDER BY (kind, org, at, seq);

INSERT INTO events_generic
SELECT
    seq, id, kind, org, district, at, received_at, source, lon, lat,
    multiIf(
        kind IN ('staff.hired', 'training.attended'), staff_id,
        kind = 'training.class_held', class_id,
        kind IN ('appeal.received', 'appeal.accepted', 'appeal.closed'), appeal_id,
        kind IN ('veteran.registered', 'archive.completed'), person_id,
        '') AS subject,
    multiIf(
        kind = 'staffing.reported', ['approved_posts', 'filled_posts'],
        kind = 'staff.hired', ['veteran'],
        kind = 'staff.headcount', ['headcount'],
        kind = 'station.rated', ['stars', 'demonstration'],
        emptyArrayString()) AS num_keys,
    multiIf(
        kind = 'staffing.reported', [approved_posts, filled_posts],
        kind = 'staff.hired', [toInt64(veteran)],
        kind = 'staff.headcount', [headcount],
        kind = 'station.rated', [toInt64(stars), toInt64(demonstration)],
        emptyArrayInt64()) AS num_values,
    data
FROM events;

RENAME TABLE events TO events_typed_0009, events_generic TO events;
