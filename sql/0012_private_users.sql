-- Users (their password hashes) move to a database of their own, `<db>_private`, which no
-- analyst's ClickHouse user is allowed — admins' included: their SQL reads vscc's database,
-- and nobody reads a password hash through SQL. vscc itself (the server's default user)
-- reads and writes it there. `{db}` is the configured database.
CREATE DATABASE IF NOT EXISTS {db}_private;

CREATE TABLE IF NOT EXISTS {db}_private.users
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

-- Run twice (a crash between the two statements), the rows are there twice: readers take the
-- latest version per name, so that changes nothing.
INSERT INTO {db}_private.users SELECT * FROM {db}.users;

DROP TABLE {db}.users;
