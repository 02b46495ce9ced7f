-- Retention: `prune` deletes what every destination has delivered, through one dedicated path.

ALTER TABLE export_destinations
    -- The watermark the current stream began at: events from here up to the watermark were
    -- delivered by this destination; those below were never its to deliver (a `start = now`
    -- or a later TIME). NULL before the stream started.
    ADD COLUMN stream_lo xid8;

-- Streams recorded before: they delivered from their first committed run's window on, or
-- nothing yet.
UPDATE export_destinations d
SET stream_lo = COALESCE((SELECT min(r.window_lo) FROM export_runs r
                          WHERE r.destination = d.name AND r.kind = 'scheduled' AND r.status = 'done'
                            AND r.finished_at >= d.stream_since),
                         d.watermark)
WHERE d.stream_started;

-- A prune is logged as a run of kind `prune`, of no destination: window_lo and window_hi bound
-- the transaction ids it deleted, range_from and range_to the events' occurred_at, window_end is
-- the cutoff (events recorded before it were considered).
ALTER TABLE export_runs DROP CONSTRAINT export_runs_kind_check;
ALTER TABLE export_runs DROP CONSTRAINT export_runs_range;
ALTER TABLE export_runs
    ALTER COLUMN destination DROP NOT NULL,
    ALTER COLUMN object_key DROP NOT NULL,
    ALTER COLUMN encoding DROP NOT NULL,
    ALTER COLUMN compression DROP NOT NULL,
    ALTER COLUMN fencing_token DROP NOT NULL,
    -- A prune's own record: who ran it, and which destinations held how many events back.
    ADD COLUMN detail jsonb,
    ADD CONSTRAINT export_runs_kind_check CHECK (kind IN ('scheduled', 'reexport', 'test', 'prune')),
    ADD CONSTRAINT export_runs_prune_shape CHECK (
        (kind = 'prune') = (destination IS NULL)
        AND (kind = 'prune' OR (object_key IS NOT NULL AND encoding IS NOT NULL
                                AND compression IS NOT NULL AND fencing_token IS NOT NULL))
    ),
    ADD CONSTRAINT export_runs_range CHECK (
        (range_from IS NULL) = (range_to IS NULL)
        AND (kind <> 'reexport' OR range_from IS NOT NULL)
        AND (kind IN ('reexport', 'prune') OR range_from IS NULL)
        AND (range_from IS NULL OR range_from < range_to)
    );
-- One prune at a time, whichever replica or operator starts it.
CREATE UNIQUE INDEX export_runs_one_pending_prune ON export_runs (kind)
    WHERE kind = 'prune' AND status = 'pending';
-- A prune reads the pending runs once a batch, however long the log.
CREATE INDEX export_runs_pending ON export_runs (kind) WHERE status = 'pending';
CREATE INDEX export_runs_prune_finished ON export_runs (finished_at DESC) WHERE kind = 'prune';

-- The append-only trigger lets a DELETE through only inside audit_prune_batch, which sets this
-- transaction-local flag around its own statement. The flag alone grants nothing: DELETE
-- needs the table privilege, which only the owner has, and the owner could drop the trigger
-- anyway. UPDATE and TRUNCATE stay refused for every role. The condition is the trigger's
-- WHEN clause, so a pruned row costs no call of the PL/pgSQL function.
DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_no_update
    BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_reject_change();
CREATE TRIGGER audit_events_no_delete
    BEFORE DELETE ON audit_events
    FOR EACH ROW WHEN (current_setting('audit_exporter.pruning', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION audit_events_reject_change();

-- Deletes, among the events with id in [id_from, id_to) recorded before `cutoff`, those that
-- are delivered everywhere:
--   * at least one destination delivered it (its current stream, between the stream's start
--     and the watermark, or rows at or below its id_floor, delivered on the cluster before a
--     move): an event no destination ever delivered stays;
--   * no destination known and not forgotten holds it back: every one whose tenant filter
--     selects it has its transaction id below its watermark (or the row at or below its
--     id_floor); one whose stream has not started holds back everything it selects;
--   * it lies in no pending scheduled run's window and no live re-export's range;
--   * `holds` (from the configuration: destinations whose stream has not started yet, as
--     [{"tenant_id": text|null, "since": timestamptz|null}]) selects it not.
-- Runs as its owner (SECURITY DEFINER): the exporter's role needs EXECUTE on it, never
-- DELETE on audit_events. The destinations' rows are share-locked meanwhile, so no reset moves
-- a watermark back under it.
CREATE FUNCTION audit_prune_batch(cutoff timestamptz, id_from bigint, id_to bigint, holds jsonb)
RETURNS TABLE (deleted bigint, txid_min xid8, txid_max xid8,
               occurred_min timestamptz, occurred_max timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM export_destinations ORDER BY name FOR SHARE;
    PERFORM set_config('audit_exporter.pruning', 'on', true);
    -- What the rule compares each row with, read once a batch: the destinations, the pending
    -- windows, the holds (a handful of rows each).
    RETURN QUERY
    WITH live AS MATERIALIZED (
        SELECT d.tenant_id, d.stream_started, d.stream_lo, d.watermark, d.id_floor
        FROM export_destinations d WHERE d.forgotten_at IS NULL
    ), pending AS MATERIALIZED (
        SELECT r.kind, r.tenant_id, r.window_lo, r.window_hi, r.id_floor, r.range_from, r.range_to
        FROM export_runs r
        WHERE r.status = 'pending'
          AND (r.kind = 'scheduled'
               OR (r.kind = 'reexport' AND (r.alive_until IS NULL OR r.alive_until > clock_timestamp())))
    ), held AS MATERIALIZED (
        SELECT h.tenant_id, h.since FROM jsonb_to_recordset(holds) AS h(tenant_id text, since timestamptz)
    ), gone AS (
        DELETE FROM audit_events e
        WHERE e.id >= id_from AND e.id < id_to AND e.recorded_at < cutoff
          AND EXISTS (
              SELECT 1 FROM live d
              WHERE d.stream_started
                AND (d.tenant_id IS NULL OR d.tenant_id = e.tenant_id)
                AND ((d.id_floor IS NOT NULL AND e.id <= d.id_floor)
                     OR (e.txid >= d.stream_lo AND e.txid < d.watermark)))
          AND NOT EXISTS (
              SELECT 1 FROM live d
              WHERE (d.tenant_id IS NULL OR d.tenant_id = e.tenant_id)
                AND NOT (d.stream_started
                         AND ((d.id_floor IS NOT NULL AND e.id <= d.id_floor) OR e.txid < d.watermark)))
          AND NOT EXISTS (
              SELECT 1 FROM pending r
              WHERE (r.tenant_id IS NULL OR r.tenant_id = e.tenant_id)
                AND CASE WHEN r.kind = 'scheduled'
                         THEN e.txid >= r.window_lo AND e.txid < r.window_hi
                              AND (r.id_floor IS NULL OR e.id > r.id_floor)
                         ELSE e.occurred_at >= r.range_from AND e.occurred_at < r.range_to END)
          AND NOT EXISTS (
              SELECT 1 FROM held h
              WHERE (h.tenant_id IS NULL OR h.tenant_id = e.tenant_id)
                AND (h.since IS NULL OR e.recorded_at >= h.since))
        RETURNING e.txid, e.occurred_at
    )
    SELECT count(*), min(g.txid), max(g.txid), min(g.occurred_at), max(g.occurred_at) FROM gone g;
    PERFORM set_config('audit_exporter.pruning', 'off', true);
END
$$;

REVOKE ALL ON FUNCTION audit_prune_batch(timestamptz, bigint, bigint, jsonb) FROM PUBLIC;
