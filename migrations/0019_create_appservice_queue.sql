-- The appservice outbox: what must still be sent to each appservice, the transaction each one
-- has open, each appservice's back-off, and how far the outbox has looked through the event
-- stream.
--
-- `appservice_outbox_position` is the stream ordering of the last event the outbox has handled
-- (queued for the appservices interested in it, or found to interest none). It starts at the
-- newest event when this migration runs, and moves in the same transaction as the queue entries
-- it produced, so a restart neither loses nor repeats an event.
CREATE TABLE appservice_outbox_position (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    stream_ordering  INTEGER NOT NULL
);
INSERT INTO appservice_outbox_position (id, stream_ordering)
    SELECT 1, COALESCE(MAX(stream_ordering), 0) FROM events;

-- One row per appservice the outbox has seen configured. `since_stream` is the newest event when
-- it was first seen: it is sent nothing older. `last_txn_id` is the id of its latest transaction
-- (ids are 1, 2, 3, ... per appservice, never reused). `failures` in a row and `retry_ts` (ms
-- since the epoch) are its back-off while it is down.
CREATE TABLE appservice_state (
    appservice_id  TEXT PRIMARY KEY,
    since_stream   INTEGER NOT NULL,
    last_txn_id    INTEGER NOT NULL DEFAULT 0,
    failures       INTEGER NOT NULL DEFAULT 0,
    retry_ts       INTEGER
);

-- One row per event, ephemeral update or to-device message still to be put into a transaction
-- for one appservice, in the order they are to be sent. An event is referenced by its stream
-- ordering; the others carry their JSON. `kind`: 0 event, 1 ephemeral, 2 to-device.
-- `supersede_key` names an ephemeral update that a newer one replaces while both wait (the
-- typists of a room, the presence of a user).
CREATE TABLE appservice_queue (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    appservice_id  TEXT NOT NULL,
    kind           INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    event_nid      INTEGER,
    json           TEXT,
    supersede_key  TEXT,
    CHECK ((event_nid IS NULL) <> (json IS NULL))
);
CREATE INDEX appservice_queue_by_service ON appservice_queue(appservice_id, kind, id);
CREATE INDEX appservice_queue_superseded ON appservice_queue(appservice_id, supersede_key)
    WHERE supersede_key IS NOT NULL;

-- The transaction made for an appservice and not yet accepted (at most one per appservice): its
-- id and the exact body sent, so every retry, also after a restart, repeats it. The queue entries
-- it carries are deleted in the same write that stores it; the row goes once the appservice
-- answered 2xx.
CREATE TABLE appservice_transactions (
    appservice_id  TEXT NOT NULL,
    txn_id         INTEGER NOT NULL,
    body           TEXT NOT NULL,
    PRIMARY KEY (appservice_id, txn_id)
);
