-- Filters and account data: what a client stores on the server for itself.
--
-- A filter is uploaded once (`POST /user/{userId}/filter`) and named by its id in later `/sync`
-- requests. Ids count up from 0 per user, so they are short and never start with `{` (which marks
-- an inline filter). The definition is kept as ruma's `FilterDefinition` serialises it, so what is
-- read back is exactly what was validated; re-uploading an identical filter returns its old id.
CREATE TABLE filters (
    user_id     TEXT NOT NULL REFERENCES users(user_id),
    filter_id   INTEGER NOT NULL,
    definition  TEXT NOT NULL,            -- JSON
    created_ts  INTEGER NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Account data, global (`room_id` = '') and per room (room tags live here as `m.tag`). Each change
-- takes the next position of the account-data stream, `stream_id`, assigned inside the write
-- transaction as one more than the largest, so `/sync` can ask what changed since a position.
-- Rows are replaced, never deleted: that keeps the largest `stream_id` from ever going back, and a
-- future removal must be written as a change (a new position) for sync to see it.
CREATE TABLE account_data (
    user_id    TEXT NOT NULL REFERENCES users(user_id),
    room_id    TEXT NOT NULL,             -- '' for global account data
    data_type  TEXT NOT NULL,
    content    TEXT NOT NULL,             -- a JSON object
    stream_id  INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE UNIQUE INDEX account_data_by_stream_id ON account_data(stream_id);
CREATE INDEX account_data_by_user_stream_id ON account_data(user_id, stream_id);
