-- What an operator can change about a destination, and what the exporter must notice.

-- A run abandoned (by a changed delivery or by `destination cancel`) never moves the watermark;
-- it stays in the log with why, and the key it may have written at the old place.
ALTER TABLE export_runs DROP CONSTRAINT export_runs_status_check;
ALTER TABLE export_runs
    ADD CONSTRAINT export_runs_status_check
        CHECK (status IN ('pending', 'done', 'failed', 'abandoned')),
    -- What defines where and how the run delivers (tenant filter, URL, encoding, compression,
    -- key layout), secret-free; a pending run is resumed only while it matches the config.
    -- NULL for runs planned before this column: they resume as before.
    ADD COLUMN delivery         jsonb,
    ADD COLUMN abandoned_reason text,
    ADD CONSTRAINT export_runs_abandoned_reason
        CHECK ((status = 'abandoned') = (abandoned_reason IS NOT NULL));

ALTER TABLE export_destinations
    -- The tenant filter the watermark covers (NULL: every tenant).
    ADD COLUMN tenant_id         text,
    -- Whether the stream's start (`start` in the config) has been applied; false for a new
    -- or forgotten destination.
    ADD COLUMN stream_started    boolean     NOT NULL DEFAULT false,
    -- When the current stream began (created, reset, or re-added after `forget`): runs
    -- committed before belong to an earlier stream.
    ADD COLUMN stream_since      timestamptz NOT NULL DEFAULT now(),
    -- pg_control_system().system_identifier of the cluster the watermark's transaction ids
    -- belong to; NULL when it could not be read.
    ADD COLUMN cluster_id        text,
    ADD COLUMN forgotten_at      timestamptz,
    -- Set when the stream is re-based after a move to a new cluster: the rows copied from the
    -- old cluster (ids up to this one) carry the old cluster's transaction ids, which mean
    -- nothing here; they were delivered there and are never exported again.
    ADD COLUMN id_floor          bigint;

-- The floor a run was planned with: its window holds only events above it.
ALTER TABLE export_runs ADD COLUMN id_floor bigint;

-- Destinations recorded before: their stream has started, since ever, and covers the tenant
-- filter of their latest committed run.
UPDATE export_destinations d
SET stream_started = true,
    stream_since = '-infinity',
    tenant_id = (SELECT r.tenant_id FROM export_runs r
                 WHERE r.destination = d.name AND r.kind = 'scheduled' AND r.status = 'done'
                 ORDER BY r.window_end DESC LIMIT 1);
