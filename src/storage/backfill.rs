//! Writes for history fetched with `/backfill` in a room joined over federation.
//!
//! Backfilled events are timeline events (not outliers) placed *before* everything the room had:
//! each one gets a negative stream ordering, one below the lowest stream ordering stored
//! (the Synapse approach). `/messages` pages by stream ordering, so they sort before the join
//! with no other change; `/sync` only looks above its `since` position, so they never show up as
//! new; they are never forward extremities and never change the room's current state. A batch is
//! inserted newest first (highest depth first), so older events get lower positions. The events
//! table's `stream_ordering` is its rowid, and SQLite hands out new rowids above the maximum, so
//! the negative ones never collide with events arriving later.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::events::NewEvent;
use super::state::EventNid;

/// A room's earliest timeline event: its stream ordering, its state before, and the ids of its
/// `prev_events` not stored here.
pub type BackwardExtremity = (EventNid, Option<i64>, Vec<String>);

/// Where backward pagination in a room ends here: the room's earliest timeline event (its stream
/// ordering and state before it) and those of its `prev_events` this server has not stored at
/// all. `None` for a room with no timeline events; the list is empty when history is complete
/// (a room created here starts with its create event, which has no `prev_events`).
pub fn backward_extremity(conn: &Connection, room_id: &str) -> Result<Option<BackwardExtremity>> {
    let earliest: Option<(EventNid, Option<i64>)> = conn
        .prepare_cached(
            "SELECT stream_ordering, state_before FROM events
             WHERE room_id = ?1 AND outlier = 0 ORDER BY stream_ordering LIMIT 1",
        )?
        .query_row([room_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((nid, state_before)) = earliest else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT p.value FROM events x, json_each(x.json, '$.prev_events') p
         WHERE x.stream_ordering = ?1
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = p.value)
         ORDER BY p.value",
    )?;
    let missing = stmt
        .query_map([nid], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some((nid, state_before, missing)))
}

/// Stores a backfilled event one position below the lowest stored, with `state_group` as its
/// state before and after (see the module docs); `None` when an event with its id is stored
/// already (as a timeline event or an outlier), which is then left as it is.
pub fn insert_backfilled_txn(
    txn: &Connection,
    event: &NewEvent<'_>,
    state_group: Option<i64>,
) -> Result<Option<EventNid>> {
    let existing = super::received::event_nids(txn, &[event.event_id.to_owned()])?;
    if existing.contains_key(event.event_id) {
        return Ok(None);
    }
    let position: EventNid = txn.query_row(
        "SELECT MIN(COALESCE(MIN(stream_ordering), 0), 0) - 1 FROM events",
        [],
        |r| r.get(0),
    )?;
    txn.prepare_cached(
        "INSERT INTO events (stream_ordering, event_id, room_id, sender, type, state_key,
                             membership, depth, origin_server_ts, json, state_before, state_after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )?
    .execute(params![
        position,
        event.event_id,
        event.room_id,
        event.sender,
        event.kind,
        event.state_key,
        event.membership,
        event.depth,
        event.origin_server_ts,
        event.json,
        state_group,
    ])?;
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::{insert_event_txn, insert_room_txn};

    fn event<'a>(id: &'a str, prev: &'a [String], json: &'a str) -> NewEvent<'a> {
        NewEvent {
            depth: 5,
            ..crate::storage::test_message(id, prev, json)
        }
    }

    #[test]
    fn backfilled_events_sort_before_the_earliest_and_leave_extremities_alone() {
        let conn = crate::storage::migrated_in_memory();
        insert_room_txn(&conn, "!r:x", "11", "@a:x", 0).unwrap();
        let edges = |prev: &[String]| crate::storage::json_with_edges(prev, &[]);
        let prev = vec!["$older".to_owned()];
        let join = insert_event_txn(&conn, &event("$join", &prev, &edges(&prev))).unwrap();
        let (nid, _, missing) = backward_extremity(&conn, "!r:x").unwrap().unwrap();
        assert_eq!((nid, missing.clone()), (join, prev.clone()));

        let oldest = vec!["$oldest".to_owned()];
        let older = edges(&oldest);
        let first = insert_backfilled_txn(&conn, &event("$older", &oldest, &older), None)
            .unwrap()
            .unwrap();
        assert!(first < 0 && first < join);
        assert_eq!(
            insert_backfilled_txn(&conn, &event("$older", &oldest, &older), None).unwrap(),
            None
        );
        let (nid, _, missing) = backward_extremity(&conn, "!r:x").unwrap().unwrap();
        assert_eq!((nid, missing), (first, oldest));
        let second = insert_backfilled_txn(&conn, &event("$oldest", &[], &edges(&[])), None)
            .unwrap()
            .unwrap();
        assert_eq!(second, first - 1);
        let extremities = crate::storage::events::forward_extremities(&conn, "!r:x").unwrap();
        assert_eq!(extremities.len(), 1);
        assert_eq!(extremities[0].event_id, "$join");
        // Later events still get positions above everything.
        let join_id = ["$join".to_owned()];
        let next = insert_event_txn(&conn, &event("$next", &join_id, &edges(&join_id))).unwrap();
        assert_eq!(next, join + 1);
    }
}
