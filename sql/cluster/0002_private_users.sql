-- Users (their password hashes) move to a database of their own, `<db>_private`, which no
-- analyst's ClickHouse user is allowed — admins' included (see sql/0012_private_users.sql).
CREATE DATABASE IF NOT EXISTS {db}_private ON CLUSTER {cluster};

CREATE TABLE IF NOT EXISTS {db}_private.users ON CLUSTER {cluster}
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{db}_private/users', '{replica}', version)
ORDER BY name;

INSERT INTO {db}_private.users SELECT * FROM {db}.users;

DROP TABLE IF EXISTS {db}.users ON CLUSTER {cluster};
