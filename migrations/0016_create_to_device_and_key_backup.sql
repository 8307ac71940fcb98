-- To-device messages waiting for their device, one row per (target device, message). The row's
-- `stream_id` is its position in the to-device stream: AUTOINCREMENT never reuses an id, even after
-- the rows with the highest ids are deleted, so positions only grow although delivered messages
-- are removed. A row is deleted when its device syncs with a token past it, or with the device.
CREATE TABLE device_inbox (
    stream_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    sender       TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    content      TEXT NOT NULL,               -- the message content, JSON
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX device_inbox_by_device ON device_inbox(user_id, device_id, stream_id);

-- Transaction ids of `PUT /sendToDevice/{eventType}/{txnId}` already carried out, per sending
-- device, so that a retried request delivers nothing twice. Rows older than a day are pruned.
CREATE TABLE to_device_txns (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    created_ts   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- `message_id`s of `m.direct_to_device` EDUs received from other servers, so that an EDU sent
-- again (in a retried transaction) is delivered once. Rows older than a week are pruned.
CREATE TABLE received_to_device (
    origin       TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    received_ts  INTEGER NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX received_to_device_by_ts ON received_to_device(received_ts);

-- Server-side key backup versions of a user. Versions are numbered per user and never reused: a
-- deleted version keeps its row (`deleted` = 1, no keys) so that deleting it again succeeds.
-- `etag` counts the changes to the version's keys.
CREATE TABLE key_backup_versions (
    user_id      TEXT NOT NULL REFERENCES users(user_id),
    version      INTEGER NOT NULL,
    algorithm    TEXT NOT NULL,
    auth_data    TEXT NOT NULL,               -- JSON object
    etag         INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

-- The backed-up room keys of a version, one per (room, session).
CREATE TABLE key_backup_keys (
    user_id              TEXT NOT NULL,
    version              INTEGER NOT NULL,
    room_id              TEXT NOT NULL,
    session_id           TEXT NOT NULL,
    first_message_index  INTEGER NOT NULL,
    forwarded_count      INTEGER NOT NULL,
    is_verified          INTEGER NOT NULL,
    session_data         TEXT NOT NULL,       -- JSON object, encrypted by the client
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES key_backup_versions(user_id, version)
        ON DELETE CASCADE
);
