-- The signed digest chain (README: Integrity): each committed scheduled run's digest names the
-- previous one; the destination remembers the chain's head, moved in the commit's transaction.

ALTER TABLE export_destinations
    -- The newest committed digest: its key, SHA-256 and signature (hex), and the window end
    -- (transaction id) it covers; NULL until the first signed run. A run whose window does
    -- not start there (a reset, runs committed without a key) says so in its digest.
    ADD COLUMN chain_head_key       text,
    ADD COLUMN chain_head_sha256    text,
    ADD COLUMN chain_head_signature text,
    ADD COLUMN chain_head_hi        xid8;

ALTER TABLE export_runs
    -- The run's digest, kept from the first time it was built, so every attempt uploads the
    -- same bytes whatever the key configured since, with the public key (PEM) that signed it.
    ADD COLUMN digest_key        text,
    ADD COLUMN digest            bytea,
    ADD COLUMN digest_signature  bytea,
    ADD COLUMN digest_public_key text;  -- PEM
