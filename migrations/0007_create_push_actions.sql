-- Push evaluation: the actions each member's push rules gave each event that notifies them, and
-- how far the evaluator has got through the event stream (so a restart resumes where it stopped
-- and no notification is lost).
CREATE TABLE event_push_actions (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    event_nid  INTEGER NOT NULL,
    highlight  INTEGER NOT NULL,
    actions    TEXT NOT NULL,                 -- JSON array of the matched rule's actions
    PRIMARY KEY (user_id, room_id, event_nid)
) WITHOUT ROWID;

CREATE TABLE push_progress (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    position  INTEGER NOT NULL
);
INSERT INTO push_progress (id, position) VALUES (1, 0);
