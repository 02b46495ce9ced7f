-- The append-only audit log that applications write to.

-- UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so event ids sort by time.
CREATE FUNCTION audit_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE DEFAULT audit_uuid_v7(),
    -- The writing transaction: the export watermark is a horizon over this column.
    txid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tenant_id   text,
    action      text        NOT NULL CHECK (action <> ''),
    actor       jsonb       NOT NULL CHECK (jsonb_typeof(actor) = 'object'),
    target      jsonb                CHECK (target IS NULL OR jsonb_typeof(target) = 'object'),
    metadata    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX audit_events_txid_id ON audit_events (txid, id);
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
CREATE INDEX audit_events_tenant_occurred_at ON audit_events (tenant_id, occurred_at);

-- A writer that sets txid by hand could place a row behind the export watermark, where it would
-- never be exported; only the database's own value is accepted.
CREATE FUNCTION audit_events_guard_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.txid IS DISTINCT FROM pg_current_xact_id() THEN
        RAISE EXCEPTION 'audit_events.txid is assigned by the database and cannot be set'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_events_guard_insert
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard_insert();

CREATE FUNCTION audit_events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_reject_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_reject_change();
