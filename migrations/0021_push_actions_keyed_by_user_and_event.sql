-- Push actions in one b-tree keyed by (user, event) instead of a table keyed by (user, room,
-- event) plus an index by (user, event): every recorded action wrote a row into each, and a
-- message notifies every member of its room, so the two were the largest share of a busy room's
-- writes. Every read is by user and position, which the new key serves alone; the room, where a
-- read needs it, is a column beside.
CREATE TABLE push_actions_by_user (
    user_id    TEXT NOT NULL,
    event_nid  INTEGER NOT NULL,
    room_id    TEXT NOT NULL,
    highlight  INTEGER NOT NULL,
    actions    TEXT NOT NULL,                 -- JSON array of the matched rule's actions
    thread_id  TEXT NOT NULL,                 -- 'main', or the thread's root event id
    PRIMARY KEY (user_id, event_nid)
) WITHOUT ROWID;
INSERT OR IGNORE INTO push_actions_by_user
    (user_id, event_nid, room_id, highlight, actions, thread_id)
SELECT user_id, event_nid, room_id, highlight, actions, thread_id FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE push_actions_by_user RENAME TO event_push_actions;
