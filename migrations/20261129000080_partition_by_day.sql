-- A run whose objects are cut by the day (UTC) of their events' occurred_at: its object_key
-- holds {YYYY}, {MM} and {DD} where each object's day goes, and each object records its day.
ALTER TABLE export_runs ADD COLUMN partition_by_day boolean NOT NULL DEFAULT false;
