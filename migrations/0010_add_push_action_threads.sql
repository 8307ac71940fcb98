-- Per-thread unread counts: the thread each notifying event belongs to ('main' for the main
-- timeline, else the thread root's event id). (Finding the rooms whose counts changed for a user
-- since a sync token uses `event_push_actions_by_user` from 0008.)
ALTER TABLE event_push_actions ADD COLUMN thread_id TEXT NOT NULL DEFAULT 'main';
