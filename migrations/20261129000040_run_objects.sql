-- A run may write several objects: a window larger than its split limit is cut at event boundaries.
-- Each object is recorded as soon as it is durably delivered, so a run interrupted between two
-- objects resumes at the first one not yet delivered, and the run log accounts for every object.

CREATE TABLE export_run_objects (
    run_id uuid NOT NULL REFERENCES export_runs (id) ON DELETE CASCADE,
    -- 1, 2, … in the run's order; the key of object n ends in `_partNNNN` (before the extension).
    seq integer NOT NULL CHECK (seq >= 1),
    key text NOT NULL,
    bytes bigint NOT NULL,
    sha256 text NOT NULL,
    events bigint NOT NULL,
    -- The oldest and newest occurred_at among its events.
    oldest_at timestamptz,
    newest_at timestamptz,
    -- The UTC day of occurred_at the object holds, when objects are cut by event day.
    partition_day date,
    -- Its last event's place in the run's order: a resumed run reads on after it.
    last_txid xid8,
    last_id bigint,
    delivered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, seq)
);

ALTER TABLE export_runs
    -- The size past which a scheduled run closes an object and starts the next, fixed when the
    -- run is planned so a retry cuts the window where the first attempt did. NULL: runs planned
    -- before splitting existed, which write one object.
    ADD COLUMN max_object_bytes bigint;

-- The objects of runs delivered before objects were recorded: one each.
INSERT INTO export_run_objects (run_id, seq, key, bytes, sha256, events, delivered_at)
SELECT id, 1, object_key, bytes, sha256, COALESCE(event_count, 0), COALESCE(finished_at, clock_timestamp())
FROM export_runs
WHERE status = 'done' AND sha256 IS NOT NULL AND bytes IS NOT NULL;
