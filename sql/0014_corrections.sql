-- Corrections and withdrawals (issue #29) are rows of `events` like any other record; nothing
-- is deleted. A record's first version is version 1, sign 1. A correction of version v is two
-- rows: a copy of version v with sign -1 (`cancels` = the seq it was stored under) and the new
-- content as version v+1, sign 1. A withdrawal is the sign -1 row alone. `actor` is who sent a
-- row (a user or a screen token's name; empty for rows from before this migration or the
-- simulator), `reason` why a version was replaced or withdrawn.
--
-- The effective records — what every figure is computed from — are the sign 1 rows whose
-- (id, version) has no sign -1 row: `events_effective`. `events` stays the raw log.
ALTER TABLE events
    ADD COLUMN version UInt32 DEFAULT 1,
    ADD COLUMN sign Int8 DEFAULT 1,
    ADD COLUMN cancels UInt64 DEFAULT 0,
    ADD COLUMN actor String DEFAULT '',
    ADD COLUMN reason String DEFAULT '';

CREATE VIEW IF NOT EXISTS events_effective AS
SELECT * FROM events
WHERE sign = 1 AND (id, version) GLOBAL NOT IN (SELECT id, version FROM events WHERE sign = -1);
