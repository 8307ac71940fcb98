-- When the bridge began handing an outbound message to the remote network. A message with this
-- set but no remote id may or may not have been sent (the bridge stopped before the answer was
-- recorded): it is in doubt, and is reconciled instead of sent again.
ALTER TABLE messages ADD COLUMN send_started_at INTEGER;
