-- Schedules placed in the day, due times carried over a frequency change, the window's times in
-- heartbeats, and side runs (re-exports, test deliveries) that a crash cannot leave pending.

ALTER TABLE export_destinations
    -- `schedule_at`, when set: the anchor is on the grid schedule_at + k * every_hours (UTC).
    ADD COLUMN schedule_at time,
    -- A due time of the previous frequency that had not been served when the frequency changed:
    -- still due until a committed run serves it, so a change never postpones an export.
    ADD COLUMN carried_due timestamptz;

ALTER TABLE export_runs
    -- The end of the previous scheduled window (NULL for the first): the window's start in time.
    ADD COLUMN window_start timestamptz,
    -- A re-export or test delivery is alive until then and renews it while it writes; one whose
    -- time passed was interrupted (its process died) and is marked failed.
    ADD COLUMN alive_until timestamptz;
