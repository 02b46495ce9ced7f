-- Re-exports: the occurred_at range a run covers, and how many objects it wrote (a large range
-- is split into several when max_object_bytes is set).
ALTER TABLE export_runs
    ADD COLUMN range_from   timestamptz,
    ADD COLUMN range_to     timestamptz,
    ADD COLUMN object_count integer,
    ADD CONSTRAINT export_runs_range CHECK (
        (kind = 'reexport') = (range_from IS NOT NULL AND range_to IS NOT NULL)
        AND (range_from IS NULL OR range_from < range_to)
    );
