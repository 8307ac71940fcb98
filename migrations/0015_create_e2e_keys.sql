-- End-to-end encryption keys: device identity keys, one-time and fallback keys, cross-signing keys
-- with the signatures uploaded for them, and the device-list stream. Rows are keyed by user and
-- device ids only, never by a reference to `devices` (which knows local devices alone), so keys of
-- users of other servers can be cached in the same tables.

-- The signed device keys as uploaded (canonical JSON, without `unsigned`). Signatures uploaded
-- later through `/keys/signatures/upload` are kept in `e2e_signatures`, not merged in here.
CREATE TABLE e2e_device_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;

-- One-time keys. The rowid is the upload order: a claim takes the oldest unclaimed key and marks
-- it claimed in the same transaction. Claimed keys stay (until their device is deleted), so that
-- a device uploading a key id again (a retried upload) can never put a handed-out key back.
CREATE TABLE e2e_one_time_keys (
    id         INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_name   TEXT NOT NULL,            -- the part of the key id after `<algorithm>:`
    key_json   TEXT NOT NULL,            -- canonical JSON of the key object (or a JSON string)
    claimed    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, device_id, algorithm, key_name)
);
CREATE INDEX e2e_one_time_keys_unclaimed
    ON e2e_one_time_keys(user_id, device_id, algorithm, id) WHERE claimed = 0;

-- At most one fallback key per device and algorithm; handed out when no one-time key is left,
-- and then marked `used` (until the device uploads another one).
CREATE TABLE e2e_fallback_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_name   TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
) WITHOUT ROWID;

-- A user's current cross-signing keys: `master`, `self_signing`, `user_signing`.
CREATE TABLE e2e_cross_signing_keys (
    user_id     TEXT NOT NULL,
    key_type    TEXT NOT NULL,
    public_key  TEXT NOT NULL,           -- unpadded base64, the second half of the key id
    key_json    TEXT NOT NULL,           -- canonical JSON as uploaded
    PRIMARY KEY (user_id, key_type)
) WITHOUT ROWID;

-- Signatures uploaded through `/keys/signatures/upload`: on a device (`target_key` is the device
-- id) or on a cross-signing key (`target_key` is its public key), by `signer_key` (a key id such
-- as `ed25519:<public key or device id>`) of `signer_user_id`.
CREATE TABLE e2e_signatures (
    target_user_id  TEXT NOT NULL,
    target_key      TEXT NOT NULL,
    signer_user_id  TEXT NOT NULL,
    signer_key      TEXT NOT NULL,
    signature       TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key, signer_user_id, signer_key)
) WITHOUT ROWID;

-- The device-list stream: one row per change of a user's devices or cross-signing keys, its
-- position assigned inside the write transaction (the largest committed position is a complete
-- prefix). `device_id` is NULL for a change of cross-signing keys.
CREATE TABLE device_list_changes (
    stream_id  INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT
);
CREATE INDEX device_list_changes_by_user ON device_list_changes(user_id, stream_id);

-- A deleted device takes its keys and the signatures on it along, whichever path deleted it
-- (logout, device deletion, password change, deactivation); if it had published identity keys,
-- its user's device list changed.
CREATE TRIGGER devices_delete_e2e_keys AFTER DELETE ON devices
BEGIN
    INSERT INTO device_list_changes (stream_id, user_id, device_id)
        SELECT COALESCE((SELECT MAX(stream_id) FROM device_list_changes), 0) + 1,
               old.user_id, old.device_id
        WHERE EXISTS (SELECT 1 FROM e2e_device_keys
                      WHERE user_id = old.user_id AND device_id = old.device_id);
    DELETE FROM e2e_device_keys WHERE user_id = old.user_id AND device_id = old.device_id;
    DELETE FROM e2e_one_time_keys WHERE user_id = old.user_id AND device_id = old.device_id;
    DELETE FROM e2e_fallback_keys WHERE user_id = old.user_id AND device_id = old.device_id;
    DELETE FROM e2e_signatures WHERE target_user_id = old.user_id AND target_key = old.device_id;
END;
