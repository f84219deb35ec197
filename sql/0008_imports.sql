-- Ledger imports. Imported records land in `events` with seqs of their own range,
-- IMPORT_SEQ_BASE + (import_no << 32) + row number, apart from the durable log's seqs. An import
-- counts (in the live figures, snapshots and dedup) only once its row here says 'ok'; a row
-- still 'running' after a crash, or 'failed', leaves its records uncounted.
CREATE TABLE IF NOT EXISTS imports
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
ENGINE = ReplacingMergeTree(version)
ORDER BY import_no;
