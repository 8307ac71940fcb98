-- Accounts: users, their profile fields, devices, access and refresh tokens, user-interactive
-- authentication sessions and registration tokens. Timestamps are milliseconds since the epoch.

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,          -- full Matrix user id, e.g. @alice:example.org
    password_hash  TEXT,                      -- argon2 PHC string; NULL: no password login
    is_admin       INTEGER NOT NULL DEFAULT 0,
    deactivated    INTEGER NOT NULL DEFAULT 0,
    created_ts     INTEGER NOT NULL
);

-- Profile fields (displayname, avatar_url, m.tz and custom keys), one row per field.
CREATE TABLE profile_fields (
    user_id  TEXT NOT NULL REFERENCES users(user_id),
    field    TEXT NOT NULL,
    value    TEXT NOT NULL,                   -- JSON
    PRIMARY KEY (user_id, field)
);

CREATE TABLE devices (
    user_id       TEXT NOT NULL REFERENCES users(user_id),
    device_id     TEXT NOT NULL,
    display_name  TEXT,
    last_seen_ts  INTEGER,
    last_seen_ip  TEXT,
    created_ts    INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens are stored only as SHA-256 hashes of the token the client holds.
CREATE TABLE access_tokens (
    token_hash          BLOB PRIMARY KEY,
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    expires_ts          INTEGER,              -- NULL: never expires
    refresh_token_hash  BLOB,                 -- the refresh token issued together with it
    used                INTEGER NOT NULL DEFAULT 0,
    created_ts          INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_by_device ON access_tokens(user_id, device_id);
CREATE INDEX access_tokens_by_refresh ON access_tokens(refresh_token_hash);

-- A refresh token stays valid after it was exchanged until its successor (next_token_hash) is
-- first used, as the specification asks.
CREATE TABLE refresh_tokens (
    token_hash       BLOB PRIMARY KEY,
    user_id          TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    next_token_hash  BLOB,
    created_ts       INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens(user_id, device_id);
CREATE INDEX refresh_tokens_by_next ON refresh_tokens(next_token_hash);

-- User-interactive authentication sessions. `purpose` binds a session to one operation (and
-- `user_id` to one user) so that stages completed for one request cannot authorise another.
CREATE TABLE uiaa_sessions (
    session_id  TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    user_id     TEXT,
    completed   TEXT NOT NULL DEFAULT '[]',   -- JSON array of completed stage types
    params      TEXT NOT NULL DEFAULT '{}',   -- JSON object: values stages recorded
    created_ts  INTEGER NOT NULL
);

CREATE TABLE registration_tokens (
    token         TEXT PRIMARY KEY,
    uses_allowed  INTEGER,                    -- NULL: unlimited
    pending       INTEGER NOT NULL DEFAULT 0,
    completed     INTEGER NOT NULL DEFAULT 0,
    expiry_time   INTEGER,                    -- NULL: never expires
    created_ts    INTEGER NOT NULL
);
