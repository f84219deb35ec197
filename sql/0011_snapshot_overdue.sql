-- Cases metrics (appeals, work orders, mailbox items): each day's overdue count beside the open
-- count, so that a past day's brief can say how many were overdue that day. Null for every
-- other metric.
ALTER TABLE metric_snapshots ADD COLUMN overdue Nullable(Int64);
