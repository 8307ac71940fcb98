-- The federation outbox: what must still be sent to each other server, and how far the outbox
-- has looked through the event stream for local events to send.
--
-- `federation_outbox_position` is the stream ordering of the last event the outbox has handled
-- (enqueued for the servers in its room, or found to need no sending); it starts at the newest
-- event when this migration runs, so history from before federation is never sent. It moves in
-- the same transaction as the queue entries it produced, so a restart neither loses nor repeats
-- an event.
CREATE TABLE federation_outbox_position (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    stream_ordering  INTEGER NOT NULL
);
INSERT INTO federation_outbox_position (id, stream_ordering)
    SELECT 1, COALESCE(MAX(stream_ordering), 0) FROM events;

-- One row per PDU or EDU still to be delivered to one destination. A PDU is referenced by its
-- stream ordering (the stored, signed event is sent as it is when the transaction is made); an
-- EDU carries its JSON (`{"edu_type": ..., "content": ...}`). `txn_id` is set when the entry is
-- put into a transaction, so a transaction that failed is retried with the same id and the same
-- entries, also after a restart. Entries are deleted only once the destination answered 200.
CREATE TABLE federation_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    destination  TEXT NOT NULL,
    event_nid    INTEGER,            -- a PDU
    edu          TEXT,               -- an EDU
    txn_id       TEXT,               -- NULL: not in a transaction yet
    CHECK ((event_nid IS NULL) <> (edu IS NULL))
);
CREATE INDEX federation_queue_by_destination ON federation_queue(destination, id);

-- Destinations that are failing: `failures` in a row and when the next attempt may start (ms
-- since the epoch). A destination without a row is not backing off.
CREATE TABLE federation_destinations (
    destination  TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    retry_ts     INTEGER
);
