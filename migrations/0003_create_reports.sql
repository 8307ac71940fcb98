-- Reports of abusive content, kept for the server's operators (the admin API lists them). A report
-- names an event (`POST /rooms/{roomId}/report/{eventId}`) or, with `event_id` NULL, a whole room
-- (`POST /rooms/{roomId}/report`). Rows are never changed, only deleted by an admin once handled.

CREATE TABLE reports (
    report_id    INTEGER PRIMARY KEY,
    received_ts  INTEGER NOT NULL,
    room_id      TEXT NOT NULL,
    event_id     TEXT,                -- NULL: the room itself was reported
    user_id      TEXT NOT NULL,       -- the reporter
    reason       TEXT,
    score        INTEGER              -- -100 (most offensive) to 0 (inoffensive), when given
);
CREATE INDEX reports_by_room ON reports(room_id);
CREATE INDEX reports_by_user ON reports(user_id);
