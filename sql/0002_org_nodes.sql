-- The org tree as a dimension table, refreshed from the reference data at every start-up, so
-- that SQL can roll records up the tree: `ARRAY JOIN ancestors AS node` puts a record's row
-- under its org and every org above it (ancestors starts with the org itself).
CREATE TABLE IF NOT EXISTS org_nodes
(
    code        String,
    name        String,
    level       String,
    parent      String,
    ancestors   Array(String)
)
ENGINE = MergeTree()
ORDER BY code;
