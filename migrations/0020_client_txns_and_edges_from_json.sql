-- Two per-event writes go, each of which dirtied pages in every commit of a stream of sends.
--
-- Client transaction ids: the index over every sent event's (room, sender, device, txn id) put a
-- random page of a b-tree with long text keys into each commit. The server now keeps an index of
-- the last day's sends in memory (`service::client_txns`), rebuilt at start from this
-- append-only list of the events sent with a transaction id; the ids stay on the event row.
DROP INDEX events_by_txn;
CREATE TABLE client_txns (
    event_nid   INTEGER PRIMARY KEY,   -- the event's stream ordering
    created_ts  INTEGER NOT NULL       -- when it was sent (the server's clock)
);
INSERT INTO client_txns (event_nid, created_ts)
SELECT stream_ordering, origin_server_ts FROM events WHERE txn_id IS NOT NULL;

-- DAG edges: `prev_events` and `auth_events` are read from the stored event JSON (`storage::dag`),
-- where they already are and where redaction keeps them.
DROP TABLE event_edges;
DROP TABLE event_auth;
