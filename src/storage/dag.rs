//! Reads along the room DAG's edges, for other servers: the auth chain of a set of events (the
//! transitive closure of `event_auth`, computed by SQLite in one recursive query rather than one
//! round trip per event) and the `prev_events` of an event (`event_edges`). Which events a server
//! may see is the service's concern, not this module's.

use rusqlite::Connection;

use super::Result;
use super::events::{COLUMNS, EventRow, event_row_at};
use super::state::EventNid;

/// Every event of `room_id` reachable from the events `seeds` through `auth_events`, oldest
/// first. The seeds themselves are included only when another seed's auth chain reaches them.
pub fn auth_chain(conn: &Connection, room_id: &str, seeds: &[EventNid]) -> Result<Vec<EventRow>> {
    if seeds.is_empty() {
        return Ok(Vec::new());
    }
    let seeds = serde_json::to_string(seeds)?;
    // `UNION` (not `UNION ALL`) makes the recursion visit each event once, so shared ancestors
    // (the create event, power levels) cost one step however many events cite them.
    let mut stmt = conn.prepare_cached(&format!(
        "WITH RECURSIVE chain(event_id) AS (
             SELECT a.auth_event_id FROM event_auth a
             WHERE a.event_nid IN (SELECT value FROM json_each(?2))
             UNION
             SELECT a.auth_event_id FROM chain c
             JOIN events e ON e.event_id = c.event_id
             JOIN event_auth a ON a.event_nid = e.stream_ordering
         )
         SELECT {COLUMNS} FROM chain c JOIN events e ON e.event_id = c.event_id
         WHERE e.room_id = ?1
         ORDER BY e.stream_ordering"
    ))?;
    let rows = stmt.query_map(rusqlite::params![room_id, seeds], |r| event_row_at(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ids of the events an event names in `prev_events`, in a stable order.
pub fn prev_event_ids(conn: &Connection, nid: EventNid) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT prev_event_id FROM event_edges WHERE event_nid = ?1 ORDER BY prev_event_id",
    )?;
    let rows = stmt.query_map([nid], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The depth of a stored, not rejected event.
pub fn event_depth(conn: &Connection, event_id: &str) -> Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(
            "SELECT depth FROM events WHERE event_id = ?1 AND rejected_reason IS NULL",
        )?
        .query_row([event_id], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::{NewEvent, insert_event_txn, insert_room_txn};

    /// Inserts an event with the given edges and returns its stream ordering.
    fn insert(conn: &Connection, id: &str, prev: &[&str], auth: &[&str]) -> EventNid {
        let prev: Vec<String> = prev.iter().map(|s| s.to_string()).collect();
        let auth: Vec<String> = auth.iter().map(|s| s.to_string()).collect();
        insert_event_txn(
            conn,
            &NewEvent {
                event_id: id,
                room_id: "!r:x",
                sender: "@a:x",
                kind: "m.room.message",
                state_key: None,
                membership: None,
                depth: 1,
                origin_server_ts: 0,
                json: "{}",
                prev_events: &prev,
                auth_events: &auth,
                state_before: None,
                txn: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_auth_chain_is_the_transitive_closure_without_duplicates() {
        let conn = crate::storage::migrated_in_memory();
        insert_room_txn(&conn, "!r:x", "10", "@a:x", 0).unwrap();
        insert(&conn, "$create", &[], &[]);
        insert(&conn, "$member", &["$create"], &["$create"]);
        insert(&conn, "$power", &["$member"], &["$create", "$member"]);
        insert(&conn, "$rules", &["$power"], &["$create", "$member", "$power"]);
        let message = insert(&conn, "$message", &["$rules"], &["$create", "$power", "$member"]);
        let other = insert(&conn, "$other", &["$message"], &["$create", "$rules"]);

        let ids = |rows: Vec<EventRow>| rows.into_iter().map(|r| r.event_id).collect::<Vec<_>>();
        assert_eq!(
            ids(auth_chain(&conn, "!r:x", &[message]).unwrap()),
            ["$create", "$member", "$power"]
        );
        assert_eq!(
            ids(auth_chain(&conn, "!r:x", &[message, other]).unwrap()),
            ["$create", "$member", "$power", "$rules"]
        );
        assert!(auth_chain(&conn, "!r:x", &[]).unwrap().is_empty());
        // Events of another room never join the chain.
        assert!(auth_chain(&conn, "!other:x", &[message]).unwrap().is_empty());
        assert_eq!(prev_event_ids(&conn, other).unwrap(), ["$message"]);
        assert_eq!(event_depth(&conn, "$rules").unwrap(), Some(1));
        assert_eq!(event_depth(&conn, "$missing").unwrap(), None);
    }
}
