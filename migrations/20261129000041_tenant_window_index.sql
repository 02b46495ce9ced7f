-- no-transaction
-- A tenant destination reads its window by this index: `tenant_id = X AND txid in [lo, hi)
-- ORDER BY txid, id` costs that tenant's rows, not the whole window's. Events without a tenant
-- are left out (only tenant destinations filter; the all-events destination reads by
-- `(txid, id)`).
--
-- Built CONCURRENTLY, outside a transaction (the first line above), so the application's inserts
-- are never blocked while it builds on a large table. A build that was interrupted leaves an
-- INVALID index of this name; `migrate` drops such a leftover and builds it again (store/migrate.rs).
-- One statement only: several statements sent at once would run in one implicit transaction,
-- which CREATE INDEX CONCURRENTLY refuses.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_events_tenant_txid_id
    ON audit_events (tenant_id, txid, id) WHERE tenant_id IS NOT NULL
