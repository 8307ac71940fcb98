-- Other servers' signing keys, fetched from them and checked against their self-signatures; used
-- to verify signed federation requests and, later, events. A key listed under `old_verify_keys`
-- keeps the time it expired: events from before then still verify with it.
CREATE TABLE server_signing_keys (
    server_name     TEXT NOT NULL,
    key_id          TEXT NOT NULL,                -- "ed25519:abc"
    public_key      TEXT NOT NULL,                -- unpadded base64
    valid_until_ts  INTEGER NOT NULL,             -- capped to the fetch time + 7 days
    expired_ts      INTEGER,                      -- set once the server lists the key as old
    PRIMARY KEY (server_name, key_id)
) WITHOUT ROWID;

-- The freshest key response of each server, exactly as that server signed it, so the notary API
-- can serve it again (with this server's signature added).
CREATE TABLE server_key_responses (
    server_name     TEXT PRIMARY KEY,
    response        TEXT NOT NULL,                -- JSON with the server's own signatures
    valid_until_ts  INTEGER NOT NULL,             -- as the server published it
    fetched_ts      INTEGER NOT NULL
) WITHOUT ROWID;
