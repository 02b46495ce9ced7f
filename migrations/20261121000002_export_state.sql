-- Per-destination export state and the log of runs.

CREATE TABLE export_destinations (
    name             text PRIMARY KEY,
    -- Every transaction below the watermark has ended and its events are delivered.
    watermark        xid8        NOT NULL DEFAULT '0',
    every_hours      integer     NOT NULL CHECK (every_hours BETWEEN 1 AND 24),
    -- Due times are anchor + k * every_hours; the anchor moves when every_hours changes.
    anchor           timestamptz NOT NULL,
    -- The latest due time that a committed scheduled run has served.
    last_slot        timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    -- Bumped on every claim, so a replica that lost its lease cannot commit.
    fencing_token    bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE export_runs (
    id                 uuid PRIMARY KEY,
    destination        text        NOT NULL REFERENCES export_destinations (name),
    kind               text        NOT NULL CHECK (kind IN ('scheduled', 'reexport', 'test')),
    status             text        NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    window_lo          xid8        NOT NULL,
    window_hi          xid8        NOT NULL,
    -- When the window was closed: the time values of the object key.
    window_end         timestamptz NOT NULL,
    -- The due time this run serves, if it was due.
    slot               timestamptz,
    tenant_id          text,
    object_key         text        NOT NULL,
    encoding           text        NOT NULL,
    compression        text        NOT NULL,
    -- Set when the window held no event: the id of the heartbeat event the object carries.
    heartbeat_event_id uuid,
    fencing_token      bigint      NOT NULL,
    attempts           integer     NOT NULL DEFAULT 0,
    last_error         text,
    event_count        bigint,
    bytes              bigint,
    sha256             text,
    started_at         timestamptz,
    finished_at        timestamptz,
    CHECK (window_lo <= window_hi)
);

-- At most one scheduled run of a destination is in flight; a crash leaves it to be resumed.
CREATE UNIQUE INDEX export_runs_one_pending ON export_runs (destination)
    WHERE status = 'pending' AND kind = 'scheduled';
-- No two runs share a key, so a 412 on upload can only mean this run's own earlier attempt.
CREATE UNIQUE INDEX export_runs_object_key ON export_runs (object_key);
CREATE INDEX export_runs_destination_window_end ON export_runs (destination, window_end DESC);
