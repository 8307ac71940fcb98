//! Writes for entering a room that lives on other servers: its state and auth chain arrive as
//! outliers (stored events outside the timeline, with no state of their own), and the room's
//! forward extremities start afresh at the join. Which events are trusted, and the state groups
//! built on them, are the service's decisions (`service/rooms/remote_join.rs`).

use rusqlite::{Connection, params};

use super::Result;
use super::events::NewEvent;
use super::state::EventNid;

/// Stores an event as an outlier with its edges and auth references, unless an event with its id
/// is stored already; returns the stream ordering of the stored one.
pub fn insert_outlier_txn(txn: &Connection, event: &NewEvent<'_>) -> Result<EventNid> {
    let existing = super::received::event_nids(txn, &[event.event_id.to_owned()])?;
    if let Some((nid, _)) = existing.get(event.event_id) {
        return Ok(*nid);
    }
    txn.prepare_cached(
        "INSERT INTO events (event_id, room_id, sender, type, state_key, membership, depth,
                             origin_server_ts, json, outlier)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
    )?
    .execute(params![
        event.event_id,
        event.room_id,
        event.sender,
        event.kind,
        event.state_key,
        event.membership,
        event.depth,
        event.origin_server_ts,
        event.json,
    ])?;
    let nid = txn.last_insert_rowid();
    Ok(nid)
}

/// Forgets a room's forward extremities: a server that joins again after being away starts its
/// timeline at the new join, not on the history it last saw.
pub fn clear_forward_extremities_txn(txn: &Connection, room_id: &str) -> Result<()> {
    txn.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1")?
        .execute([room_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::insert_room_txn;
    use crate::storage::received::stored_events;

    fn event<'a>(id: &'a str) -> NewEvent<'a> {
        NewEvent {
            event_id: id,
            room_id: "!r:x",
            sender: "@a:x",
            kind: "m.room.create",
            state_key: Some(""),
            membership: None,
            depth: 1,
            origin_server_ts: 0,
            json: "{}",
            prev_events: &[],
            state_before: None,
            txn: None,
        }
    }

    #[test]
    fn an_outlier_is_stored_once_and_outside_the_timeline() {
        let conn = crate::storage::migrated_in_memory();
        insert_room_txn(&conn, "!r:x", "11", "@a:x", 0).unwrap();
        let first = insert_outlier_txn(&conn, &event("$create")).unwrap();
        assert_eq!(insert_outlier_txn(&conn, &event("$create")).unwrap(), first);
        let stored = stored_events(&conn, &["$create".to_owned()]).unwrap();
        assert!(stored[0].outlier);
        assert!(
            crate::storage::received::extremities_with_state(&conn, "!r:x")
                .unwrap()
                .is_empty()
        );
    }
}
