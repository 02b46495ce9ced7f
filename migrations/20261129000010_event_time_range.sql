-- New events must carry times that RFC 3339 can write: years 0001 to 9999, never 'infinity'.
-- NOT VALID: rows already in the table are not scanned (no long lock on a large table); the
-- exporter writes any such older row in a documented fallback form instead of failing on it.
ALTER TABLE audit_events
    ADD CONSTRAINT audit_events_time_range CHECK (
        occurred_at >= '0001-01-01 00:00:00+00' AND occurred_at < '10000-01-01 00:00:00+00'
        AND recorded_at >= '0001-01-01 00:00:00+00' AND recorded_at < '10000-01-01 00:00:00+00'
    ) NOT VALID;
