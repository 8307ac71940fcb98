//! Reads along the room DAG's edges, for other servers: the auth chain of a set of events (the
//! transitive closure of `auth_events`, computed by SQLite in one recursive query rather than one
//! round trip per event) and the `prev_events` of an event. The edges are read from the stored
//! event JSON (both fields survive redaction), so appending an event writes no extra rows for
//! them. Which events a server may see is the service's concern, not this module's.

use rusqlite::{Connection, OptionalExtension, params};

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
             SELECT a.value FROM events s, json_each(s.json, '$.auth_events') a
             WHERE s.stream_ordering IN (SELECT value FROM json_each(?2))
             UNION
             SELECT a.value FROM chain c
             JOIN events e ON e.event_id = c.event_id, json_each(e.json, '$.auth_events') a
         )
         SELECT {COLUMNS} FROM chain c JOIN events e ON e.event_id = c.event_id
         WHERE e.room_id = ?1
         ORDER BY e.stream_ordering"
    ))?;
    let rows = stmt.query_map(params![room_id, seeds], |r| event_row_at(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A stored event with its depth, for walks that order by it.
#[derive(Debug, Clone)]
pub struct DagEvent {
    pub depth: i64,
    pub row: EventRow,
}

fn dag_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<DagEvent> {
    Ok(DagEvent {
        depth: r.get(0)?,
        row: event_row_at(r, 1)?,
    })
}

/// A stored, not rejected event of the room.
pub fn room_event(conn: &Connection, room_id: &str, event_id: &str) -> Result<Option<DagEvent>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT e.depth, {COLUMNS} FROM events e
             WHERE e.event_id = ?1 AND e.room_id = ?2 AND e.rejected_reason IS NULL"
        ))?
        .query_row(params![event_id, room_id], dag_event)
        .optional()?)
}

/// The stored, not rejected events an event names in `prev_events` (those this server has), in
/// stream order.
pub fn prev_events(conn: &Connection, nid: EventNid) -> Result<Vec<DagEvent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.depth, {COLUMNS} FROM events e
         WHERE e.event_id IN (SELECT p.value FROM events x, json_each(x.json, '$.prev_events') p
                              WHERE x.stream_ordering = ?1)
           AND e.rejected_reason IS NULL
         ORDER BY e.stream_ordering"
    ))?;
    let rows = stmt.query_map([nid], dag_event)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::{insert_event_txn, insert_room_txn};

    /// Inserts an event with the given edges and returns its stream ordering.
    fn insert(conn: &Connection, id: &str, prev: &[&str], auth: &[&str]) -> EventNid {
        let prev: Vec<String> = prev.iter().map(|s| s.to_string()).collect();
        let json = crate::storage::json_with_edges(&prev, auth);
        insert_event_txn(conn, &crate::storage::test_message(id, &prev, &json)).unwrap()
    }

    #[test]
    fn the_auth_chain_is_the_transitive_closure_without_duplicates() {
        let conn = crate::storage::migrated_in_memory();
        insert_room_txn(&conn, "!r:x", "10", "@a:x", 0).unwrap();
        insert(&conn, "$create", &[], &[]);
        insert(&conn, "$member", &["$create"], &["$create"]);
        insert(&conn, "$power", &["$member"], &["$create", "$member"]);
        insert(
            &conn,
            "$rules",
            &["$power"],
            &["$create", "$member", "$power"],
        );
        let message = insert(
            &conn,
            "$message",
            &["$rules"],
            &["$create", "$power", "$member"],
        );
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
        assert!(
            auth_chain(&conn, "!other:x", &[message])
                .unwrap()
                .is_empty()
        );
        let prev: Vec<String> = prev_events(&conn, other)
            .unwrap()
            .into_iter()
            .map(|e| e.row.event_id)
            .collect();
        assert_eq!(prev, ["$message"]);
        assert_eq!(
            room_event(&conn, "!r:x", "$rules").unwrap().unwrap().depth,
            1
        );
        assert!(room_event(&conn, "!r:x", "$missing").unwrap().is_none());
        assert!(room_event(&conn, "!other:x", "$rules").unwrap().is_none());
    }
}
