-- Pushers: where a user's notifications are sent (HTTP push gateways), and how far delivery to
-- each has got.
--
-- A pusher belongs to the device that set it: deleting the device (logout, device deletion,
-- deactivation) deletes its pushers through the foreign key. `last_event_nid` is the stream
-- position of the last notification handled (sent, or skipped as already read or refused); it
-- starts at the push evaluator's position when the pusher is created, so older notifications
-- are never sent, and only moves after the gateway accepted a notification, so a restart loses
-- nothing pending. `failures` and `retry_ts` hold the back-off of a
-- gateway that is failing.
CREATE TABLE pushers (
    user_id              TEXT NOT NULL,
    app_id               TEXT NOT NULL,
    pushkey              TEXT NOT NULL,
    kind                 TEXT NOT NULL,     -- 'http'
    app_display_name     TEXT NOT NULL,
    device_display_name  TEXT NOT NULL,
    profile_tag          TEXT,
    lang                 TEXT NOT NULL,
    data                 TEXT NOT NULL,     -- the JSON object `data` as the client set it
    device_id            TEXT,              -- the device that set it (NULL: none)
    pushkey_ts           INTEGER NOT NULL,  -- when it was last set, seconds since the epoch
    last_event_nid       INTEGER NOT NULL,
    failures             INTEGER NOT NULL DEFAULT 0,
    retry_ts             INTEGER,           -- ms since the epoch; NULL: not backing off
    PRIMARY KEY (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX pushers_by_key ON pushers(app_id, pushkey);
CREATE INDEX pushers_by_device ON pushers(user_id, device_id);

-- Delivery reads a user's notifications after a position in stream order.
CREATE INDEX event_push_actions_by_user ON event_push_actions(user_id, event_nid);
