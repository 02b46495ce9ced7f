-- Retention, hardened: every batch a prune deletes is on record in the same transaction, the
-- function computes every hold from the tables itself (no caller-supplied holds), and a tenant
-- whose events were all pruned is still known.

-- A destination whose configured tenant_id differs from the one its watermark covers (export
-- refuses it until `destination reset`), as the latest prune read the configuration: it holds
-- back every event of the configured filter, since where the reset will start it is not known
-- yet. {"tenant_id": text|null}; NULL when the configuration names the covered filter.
ALTER TABLE export_destinations ADD COLUMN tenant_change jsonb;

-- Tenants some of whose events a prune deleted: such a tenant is known though no event of it
-- is left (`status` and `config check` warn of a tenant_id no event ever had).
CREATE TABLE export_pruned_tenants (
    tenant_id text PRIMARY KEY,
    -- The prune that first deleted an event of it.
    run_id    uuid NOT NULL
);

-- A committed run that delivered events of its tenant makes that tenant known as well.
CREATE INDEX export_runs_delivered_tenant ON export_runs (tenant_id)
    WHERE status = 'done' AND event_count > 0 AND tenant_id IS NOT NULL;

-- Every batch that deleted something, written by audit_prune_batch alone: the exporter's role
-- may read it (README, "Database roles") but not change it, so what it deleted stays on record
-- whatever becomes of the run's row, which that role must be able to update.
CREATE TABLE export_prune_batches (
    run_id       uuid        NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    by_role      text        NOT NULL DEFAULT session_user,
    cutoff       timestamptz NOT NULL,
    id_from      bigint      NOT NULL,
    id_to        bigint      NOT NULL,
    deleted      bigint      NOT NULL,
    txid_min     xid8,
    txid_max     xid8,
    occurred_min timestamptz,
    occurred_max timestamptz
);
CREATE INDEX export_prune_batches_run ON export_prune_batches (run_id);

DROP FUNCTION audit_prune_batch(timestamptz, bigint, bigint, jsonb);

-- Deletes, among the events with id in [id_from, id_to) recorded before the cutoff of the
-- pending prune run `prune_id` (its window_end), those that are delivered everywhere:
--   * at least one destination delivered it (its current stream, between the stream's start
--     and the watermark, or rows at or below its id_floor, delivered on the cluster before a
--     move): an event no destination ever delivered stays;
--   * no destination known and not forgotten holds it back: every one whose tenant filter
--     selects it has its transaction id below its watermark (or the row at or below its
--     id_floor); one whose stream has not started holds back everything it selects, and one
--     whose configured filter changed (tenant_change) everything the new filter selects;
--   * (refused outright while a destination's watermark is above this cluster's transaction
--     ids: it belongs to the cluster the database was moved from)
--   * no pending scheduled run's window selects it (its transaction ids, its tenant, above its
--     id_floor) and no live re-export's range does (its occurred_at range, its tenant).
-- In the same transaction it adds what it deleted to the run's row (count, transaction-id and
-- occurred_at bounds, and the tenants to export_pruned_tenants) and to export_prune_batches,
-- which no caller can change, so no deletion is ever committed without its record; it refuses
-- unless `prune_id` is a pending prune run whose cutoff is not in the future.
-- Runs as its owner (SECURITY DEFINER): the exporter's role needs EXECUTE on it, never DELETE
-- on audit_events. The destinations' rows are share-locked meanwhile, so no reset moves a
-- watermark back under it, and the run's row is locked, so no other prune settles it meanwhile.
CREATE FUNCTION audit_prune_batch(prune_id uuid, id_from bigint, id_to bigint)
RETURNS TABLE (deleted bigint, txid_min xid8, txid_max xid8,
               occurred_min timestamptz, occurred_max timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    cutoff timestamptz;
    moved record;
BEGIN
    SELECT r.window_end INTO cutoff FROM export_runs r
    WHERE r.id = prune_id AND r.kind = 'prune' AND r.status = 'pending'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit_prune_batch: run % is not a pending prune run', prune_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'a prune deletes only under a run of kind prune that it logged as pending';
    END IF;
    IF cutoff > clock_timestamp() THEN
        RAISE EXCEPTION 'audit_prune_batch: the cutoff % of prune run % is in the future', cutoff, prune_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM 1 FROM export_destinations ORDER BY name FOR SHARE;
    -- A watermark above this cluster's transaction ids belongs to another cluster (a dump and
    -- restore not yet followed by `destination reset`): new events would count as delivered.
    SELECT d.name, d.watermark INTO moved FROM export_destinations d
    WHERE d.forgotten_at IS NULL AND d.stream_started
      AND d.watermark > pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY d.name LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit_prune_batch: destination % has its watermark % above this cluster''s transaction ids (horizon %): the database moved, and events written since would count as delivered; refused until `audit-exporter destination reset % --start TIME` re-bases its stream',
            moved.name, moved.watermark, pg_snapshot_xmin(pg_current_snapshot()), moved.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM set_config('audit_exporter.pruning', 'on', true);
    RETURN QUERY
    WITH live AS MATERIALIZED (
        SELECT d.tenant_id, d.stream_started, d.stream_lo, d.watermark, d.id_floor,
               d.tenant_change IS NOT NULL AS changed, d.tenant_change->>'tenant_id' AS new_tenant
        FROM export_destinations d WHERE d.forgotten_at IS NULL
    ), pending AS MATERIALIZED (
        SELECT r.kind, r.tenant_id, r.window_lo, r.window_hi, r.id_floor, r.range_from, r.range_to
        FROM export_runs r
        WHERE r.status = 'pending'
          AND (r.kind = 'scheduled'
               OR (r.kind = 'reexport' AND (r.alive_until IS NULL OR r.alive_until > clock_timestamp())))
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
              WHERE ((d.tenant_id IS NULL OR d.tenant_id = e.tenant_id)
                     AND NOT (d.stream_started
                              AND ((d.id_floor IS NOT NULL AND e.id <= d.id_floor) OR e.txid < d.watermark)))
                 OR (d.changed AND (d.new_tenant IS NULL OR d.new_tenant = e.tenant_id)))
          AND NOT EXISTS (
              SELECT 1 FROM pending r
              WHERE (r.tenant_id IS NULL OR r.tenant_id = e.tenant_id)
                AND CASE WHEN r.kind = 'scheduled'
                         THEN e.txid >= r.window_lo AND e.txid < r.window_hi
                              AND (r.id_floor IS NULL OR e.id > r.id_floor)
                         ELSE e.occurred_at >= r.range_from AND e.occurred_at < r.range_to END)
        RETURNING e.txid, e.occurred_at, e.tenant_id
    ), tally AS MATERIALIZED (
        SELECT count(*) AS n, min(g.txid) AS lo, max(g.txid) AS hi,
               min(g.occurred_at) AS o_from, max(g.occurred_at) AS o_to
        FROM gone g
    ), noted AS (
        UPDATE export_runs r
        SET event_count = COALESCE(r.event_count, 0) + t.n,
            window_lo = CASE WHEN COALESCE(r.event_count, 0) = 0 THEN t.lo
                             ELSE LEAST(r.window_lo, t.lo) END,
            window_hi = CASE WHEN COALESCE(r.event_count, 0) = 0
                             THEN (t.hi::text::bigint + 1)::text::xid8
                             ELSE GREATEST(r.window_hi, (t.hi::text::bigint + 1)::text::xid8) END,
            range_from = LEAST(r.range_from, t.o_from),
            range_to = GREATEST(r.range_to, t.o_to + interval '1 microsecond')
        FROM tally t
        WHERE r.id = prune_id AND t.n > 0
        RETURNING r.id
    ), logged AS (
        INSERT INTO export_prune_batches (run_id, cutoff, id_from, id_to, deleted, txid_min, txid_max,
                                          occurred_min, occurred_max)
        SELECT prune_id, cutoff, id_from, id_to, t.n, t.lo, t.hi, t.o_from, t.o_to
        FROM tally t WHERE t.n > 0
        RETURNING 1
    ), tenants AS (
        INSERT INTO export_pruned_tenants (tenant_id, run_id)
        SELECT DISTINCT g.tenant_id, prune_id FROM gone g WHERE g.tenant_id IS NOT NULL
        ON CONFLICT (tenant_id) DO NOTHING
        RETURNING 1
    )
    SELECT t.n, t.lo, t.hi, t.o_from, t.o_to FROM tally t;
    PERFORM set_config('audit_exporter.pruning', 'off', true);
END
$$;

REVOKE ALL ON FUNCTION audit_prune_batch(uuid, bigint, bigint) FROM PUBLIC;
