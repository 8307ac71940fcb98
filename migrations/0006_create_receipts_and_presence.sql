-- Read receipts and the last presence of each user.
--
-- A receipt row is a user's latest receipt of one type in one room and thread: `thread_id` is ''
-- for an unthreaded receipt, 'main' for the main timeline, or a thread root's event id. A new
-- receipt replaces the row only when its event comes later in the room (`event_stream_ordering`,
-- the event's own stream position), so a receipt never moves back. Each change takes the next
-- position of the receipt stream, `stream_id`, assigned inside the write transaction as one more
-- than the largest; rows are replaced, never deleted, so that largest position never goes back.
CREATE TABLE receipts (
    room_id                TEXT NOT NULL REFERENCES rooms(room_id),
    receipt_type           TEXT NOT NULL,     -- 'm.read' or 'm.read.private'
    user_id                TEXT NOT NULL,
    thread_id              TEXT NOT NULL,     -- '' unthreaded, 'main', or a thread root event id
    event_id               TEXT NOT NULL,
    event_stream_ordering  INTEGER NOT NULL,
    ts                     INTEGER NOT NULL,  -- when the server received it, ms since the epoch
    stream_id              INTEGER NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE UNIQUE INDEX receipts_by_stream_id ON receipts(stream_id);
CREATE INDEX receipts_by_room_stream_id ON receipts(room_id, stream_id);

-- The presence a user last set, so status messages and "last active" survive a restart. Live
-- presence (idle, offline after silence) is kept in memory and derived from these times.
CREATE TABLE presence (
    user_id         TEXT PRIMARY KEY REFERENCES users(user_id),
    state           TEXT NOT NULL,            -- 'online', 'unavailable' or 'offline'
    status_msg      TEXT,
    last_active_ts  INTEGER NOT NULL,         -- the last time the user was active
    last_seen_ts    INTEGER NOT NULL          -- the last time the user set their presence
);
