-- The shape of the events a run writes (`schema` in the config): native or OCSF. Runs planned
-- before there was a choice wrote the native shape.
ALTER TABLE export_runs
    ADD COLUMN event_schema text NOT NULL DEFAULT 'native' CHECK (event_schema IN ('native', 'ocsf'));
