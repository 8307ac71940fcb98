-- Rooms as a DAG of PDUs. Every persisted event gets a stream_ordering (its rowid, assigned in
-- the write transaction, so "current position = last committed" holds). State is kept as state
-- groups that share structure: each group records its own changes against its parent, and a
-- delta against a "base" ancestor chosen by clearing the lowest set bit of its depth (skip
-- deltas), so reading a state key walks O(log n) groups and storage stays O(n log n) at worst.

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    room_version  TEXT NOT NULL,
    creator       TEXT NOT NULL,
    published     INTEGER NOT NULL DEFAULT 0,   -- listed in the public room directory
    created_ts    INTEGER NOT NULL
);

CREATE TABLE events (
    stream_ordering   INTEGER PRIMARY KEY,      -- local position; also the event's numeric id
    event_id          TEXT NOT NULL UNIQUE,
    room_id           TEXT NOT NULL REFERENCES rooms(room_id),
    sender            TEXT NOT NULL,
    type              TEXT NOT NULL,
    state_key         TEXT,
    membership        TEXT,                     -- content.membership of m.room.member events
    depth             INTEGER NOT NULL,
    origin_server_ts  INTEGER NOT NULL,
    json              TEXT NOT NULL,            -- canonical JSON, federation form (redacted once redacted)
    state_before      INTEGER,                  -- state group before the event (NULL for outliers)
    state_after       INTEGER,                  -- state group after the event
    outlier           INTEGER NOT NULL DEFAULT 0,
    rejected_reason   TEXT,                     -- set when the event failed authorisation
    soft_failed       INTEGER NOT NULL DEFAULT 0,
    redacted_by       TEXT,                     -- the redaction applied to the stored copy
    txn_device        TEXT,                     -- the sending device and its transaction id, for
    txn_id            TEXT                      -- idempotent sends (same room, sender, device, txn)
);
CREATE INDEX events_by_room ON events(room_id, stream_ordering);
CREATE INDEX events_by_room_ts ON events(room_id, origin_server_ts);

-- Edges and auth references lead with the event's stream ordering, so writing them appends to
-- the end of their b-trees instead of touching a random page per row.
CREATE TABLE event_edges (
    event_nid      INTEGER NOT NULL,
    prev_event_id  TEXT NOT NULL,
    PRIMARY KEY (event_nid, prev_event_id)
) WITHOUT ROWID;

CREATE TABLE event_auth (
    event_nid      INTEGER NOT NULL,
    auth_event_id  TEXT NOT NULL,
    PRIMARY KEY (event_nid, auth_event_id)
) WITHOUT ROWID;

CREATE TABLE forward_extremities (
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;

-- Relations (m.relates_to) of events, for aggregation and /relations.
CREATE TABLE event_relations (
    event_id    TEXT PRIMARY KEY,
    relates_to  TEXT NOT NULL,
    rel_type    TEXT NOT NULL,
    room_id     TEXT NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations(relates_to, rel_type);

-- Interned (type, state_key) pairs.
CREATE TABLE state_keys (
    key_nid    INTEGER PRIMARY KEY,
    type       TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    UNIQUE (type, state_key)
);

CREATE TABLE state_groups (
    group_id  INTEGER PRIMARY KEY,
    room_id   TEXT NOT NULL,
    parent    INTEGER,        -- the group this one was derived from (lineage)
    base      INTEGER,        -- the ancestor `delta` is relative to (NULL: delta is the full state)
    depth     INTEGER NOT NULL
);

-- Own changes of a group against its parent (event_nid NULL: the key was removed).
CREATE TABLE state_group_changes (
    group_id   INTEGER NOT NULL,
    key_nid    INTEGER NOT NULL,
    event_nid  INTEGER,
    PRIMARY KEY (group_id, key_nid)
) WITHOUT ROWID;

-- Delta of a group against its base; equal to its changes when base = parent (then not stored).
CREATE TABLE state_group_deltas (
    group_id   INTEGER NOT NULL,
    key_nid    INTEGER NOT NULL,
    event_nid  INTEGER,
    PRIMARY KEY (group_id, key_nid)
) WITHOUT ROWID;

-- The current state of every room, answering "who is in this room" and "what is the name" without
-- replaying history.
CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_nid  INTEGER NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
) WITHOUT ROWID;

-- Current membership per room and user ("which rooms is this user in").
CREATE TABLE room_memberships (
    room_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    membership  TEXT NOT NULL,
    event_nid   INTEGER NOT NULL,
    forgotten   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_memberships_by_user ON room_memberships(user_id, membership);

-- Client transaction ids live on the event row; only events sent with one are indexed.
CREATE INDEX events_by_txn ON events(room_id, sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;

CREATE TABLE room_aliases (
    alias    TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL,
    creator  TEXT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases(room_id);
CREATE INDEX events_by_member ON events(room_id, state_key, membership) WHERE type = 'm.room.member';
