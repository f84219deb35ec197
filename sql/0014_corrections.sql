-- Corrections and withdrawals (issue #29) are rows of `events` like any other record; nothing
-- is deleted. A record's first version is version 1, sign 1. A correction of version v is two
-- rows: a copy of version v with sign -1 (`cancels` = the seq it was stored under) and the new
-- content as version v+1, sign 1. A withdrawal is the sign -1 row alone. `actor` is who sent a
-- row (a user or a screen token's name; empty for rows from before this migration or the
-- simulator), `reason` why a version was replaced or withdrawn.
--
-- The effective records — what every figure is computed from — are the sign 1 rows whose
-- (id, version) has no sign -1 row: `events_effective`. `events` stays the raw log.
--
-- The defaults of the rows stored before (version 1, sign 1) are written without a literal
-- (every stored id is non-empty): 18.16 fills a column missing from an old part by evaluating
-- its default inside the query, and with `DEFAULT toInt8(1)` a query holding the literal `1`
-- itself (`if(sign = 1, …)`) failed on such a part with "Column '1' already exists". The rows
-- stored before are then written again with the new columns (OPTIMIZE … FINAL, once), so that
-- no part lacks them. Every row written from now on holds them all.
ALTER TABLE events
    ADD COLUMN version UInt32 DEFAULT toUInt32(notEmpty(id)),
    ADD COLUMN sign Int8 DEFAULT toInt8(notEmpty(id)),
    ADD COLUMN cancels UInt64,
    ADD COLUMN actor String,
    ADD COLUMN reason String;

OPTIMIZE TABLE events FINAL;

CREATE VIEW IF NOT EXISTS events_effective AS
SELECT * FROM events
WHERE sign = 1 AND (id, version) GLOBAL NOT IN (SELECT id, version FROM events WHERE sign = -1);

-- A re-imported ledger corrects the records whose 记录编号 it holds with other content and,
-- asked to, withdraws those it no longer holds: the run counts both.
ALTER TABLE imports
    ADD COLUMN corrected UInt64,
    ADD COLUMN withdrawn UInt64;
