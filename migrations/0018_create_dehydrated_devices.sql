-- Dehydrated devices (MSC3814): at most one per user, a row of `devices` that never holds an
-- access token, plus the client's encrypted `device_data`. Its keys live in the e2e tables and
-- its to-device messages in `device_inbox` like any device's; deleting the device row deletes
-- them (trigger `devices_delete_e2e_keys`, foreign key cascades) and this row.
CREATE TABLE dehydrated_devices (
    user_id      TEXT PRIMARY KEY REFERENCES users(user_id),
    device_id    TEXT NOT NULL,
    device_data  TEXT NOT NULL,               -- JSON object, opaque to the server
    created_ts   INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- A dehydrated device is no session: nothing may log in as it, whichever path issues the token.
CREATE TRIGGER dehydrated_devices_refuse_tokens BEFORE INSERT ON access_tokens
WHEN EXISTS (SELECT 1 FROM dehydrated_devices
             WHERE user_id = new.user_id AND device_id = new.device_id)
BEGIN
    SELECT RAISE(ABORT, 'a dehydrated device cannot hold access tokens');
END;
