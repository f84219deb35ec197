-- Silences: the newest row per id is the silence's current definition (deleted = 1 ends it).
CREATE TABLE IF NOT EXISTS alert_silences
(
    at          DateTime('Asia/Shanghai'),
    id          String,
    created_by  String,
    spec        String,
    deleted     UInt8
)
ENGINE = MergeTree()
ORDER BY (id, at);
