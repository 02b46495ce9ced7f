-- A writer that does not say when the event occurred gets the time of its insert, so a plain
-- INSERT of action and actor works.
ALTER TABLE audit_events ALTER COLUMN occurred_at SET DEFAULT now();
