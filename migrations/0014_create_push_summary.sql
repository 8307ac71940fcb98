-- Unread notification and highlight counts per user, room and thread ('main' or a thread root),
-- kept up to date as the push evaluator records actions (incremented) and as read receipts move
-- (recounted for that user and room), so `/sync` reads a count instead of counting rows.
CREATE TABLE push_summary (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    notify     INTEGER NOT NULL,
    highlight  INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
) WITHOUT ROWID;

INSERT INTO push_summary (user_id, room_id, thread_id, notify, highlight)
SELECT p.user_id, p.room_id, p.thread_id, COUNT(*), SUM(p.highlight)
FROM event_push_actions p
WHERE p.event_nid > COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r
        WHERE r.room_id = p.room_id AND r.user_id = p.user_id
          AND r.receipt_type IN ('m.read', 'm.read.private')
          AND r.thread_id IN ('', p.thread_id)), 0)
GROUP BY p.user_id, p.room_id, p.thread_id;
