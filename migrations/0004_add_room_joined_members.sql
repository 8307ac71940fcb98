-- The public room directory lists published rooms largest first. To page through it with a key
-- (joined members, room id) instead of counting every room's members for every page, each room
-- keeps its number of joined members, maintained by triggers on `room_memberships` in the same
-- transaction as the membership change, so it can never drift from the memberships themselves.

ALTER TABLE rooms ADD COLUMN joined_members INTEGER NOT NULL DEFAULT 0;

UPDATE rooms SET joined_members = (
    SELECT COUNT(*) FROM room_memberships m
    WHERE m.room_id = rooms.room_id AND m.membership = 'join'
);

CREATE INDEX rooms_published_by_size ON rooms(joined_members DESC, room_id) WHERE published = 1;

CREATE TRIGGER room_memberships_count_insert AFTER INSERT ON room_memberships
WHEN NEW.membership = 'join'
BEGIN
    UPDATE rooms SET joined_members = joined_members + 1 WHERE room_id = NEW.room_id;
END;

CREATE TRIGGER room_memberships_count_update AFTER UPDATE OF membership ON room_memberships
WHEN (OLD.membership = 'join') <> (NEW.membership = 'join')
BEGIN
    UPDATE rooms
    SET joined_members = joined_members + (CASE WHEN NEW.membership = 'join' THEN 1 ELSE -1 END)
    WHERE room_id = NEW.room_id;
END;

CREATE TRIGGER room_memberships_count_delete AFTER DELETE ON room_memberships
WHEN OLD.membership = 'join'
BEGIN
    UPDATE rooms SET joined_members = joined_members - 1 WHERE room_id = OLD.room_id;
END;
