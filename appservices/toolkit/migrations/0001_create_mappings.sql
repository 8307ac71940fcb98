-- Portals: one Matrix room per remote chat.
CREATE TABLE portals (
    remote_id TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Ghosts: one Matrix user per remote user, with the profile last set on it.
CREATE TABLE ghosts (
    remote_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL UNIQUE,
    displayname TEXT,
    avatar_url TEXT
);

-- Messages bridged in either direction. A row is claimed before the message is bridged, so a
-- remote id or an event id is bridged at most once, and the copy made by bridging it is known
-- when it comes back (the loop-breaker).
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    remote_id TEXT UNIQUE,
    event_id TEXT UNIQUE,
    room_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    delivery TEXT NOT NULL DEFAULT 'pending' CHECK (delivery IN ('pending', 'delivered', 'failed')),
    reason TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_pending ON messages (direction, delivery);

-- Transactions the homeserver pushed, with how far their handling got.
CREATE TABLE transactions (
    txn_id TEXT PRIMARY KEY NOT NULL,
    events_done INTEGER NOT NULL DEFAULT 0,
    ephemeral_done INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- Management rooms: a direct chat between a Matrix user and the bridge bot.
CREATE TABLE management_rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL
);
