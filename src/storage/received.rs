//! What other servers send us: table `received_transactions` (the answer given to each
//! transaction, for idempotency), and the writes and reads of PDUs received over federation —
//! events stored with a kind (timeline, soft-failed, rejected), their statuses, and the state
//! groups their state is computed from. Which kind an event gets is the service's decision.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::events::{COLUMNS, EventRow, NewEvent, event_row_at, insert_event_txn};
use super::state::EventNid;

/// The answer given to transaction `txn_id` of `origin`, if it was processed before.
pub fn transaction_response(
    conn: &Connection,
    origin: &str,
    txn_id: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT response FROM received_transactions WHERE origin = ?1 AND txn_id = ?2",
        )?
        .query_row(params![origin, txn_id], |r| r.get(0))
        .optional()?)
}

/// Records the answer to a transaction; the first answer recorded stays.
pub fn insert_transaction_response_txn(
    txn: &Connection,
    origin: &str,
    txn_id: &str,
    response: &str,
    now: i64,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT OR IGNORE INTO received_transactions (origin, txn_id, response, received_ts)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![origin, txn_id, response, now])?;
    Ok(())
}

/// A stored event with what became of it on receipt.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub row: EventRow,
    pub rejected_reason: Option<String>,
    pub soft_failed: bool,
    pub outlier: bool,
}

/// The stored events among `ids`, rejected and soft-failed ones included.
pub fn stored_events(conn: &Connection, ids: &[String]) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, e.rejected_reason, e.soft_failed, e.outlier FROM events e
         WHERE e.event_id = ?1"
    ))?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let event = stmt
            .query_row([id], |r| {
                Ok(StoredEvent {
                    row: event_row_at(r, 0)?,
                    rejected_reason: r.get(7)?,
                    soft_failed: r.get(8)?,
                    outlier: r.get(9)?,
                })
            })
            .optional()?;
        found.extend(event);
    }
    Ok(found)
}

/// The state of a group as ((type, state_key), event id) pairs.
pub fn state_ids_of_group(
    conn: &Connection,
    group: i64,
) -> Result<Vec<((String, String), String)>> {
    let state = super::state::load_state(conn, group)?;
    let keys: Vec<i64> = state.keys().copied().collect();
    let names = super::state::keys_of(conn, &keys)?;
    let mut id_of =
        conn.prepare_cached("SELECT event_id FROM events WHERE stream_ordering = ?1")?;
    let mut entries = Vec::with_capacity(state.len());
    for (key, nid) in state {
        let Some(name) = names.get(&key) else {
            continue;
        };
        let event_id: Option<String> = id_of.query_row([nid], |r| r.get(0)).optional()?;
        if let Some(event_id) = event_id {
            entries.push((name.clone(), event_id));
        }
    }
    Ok(entries)
}

/// Stream orderings and memberships of stored events, by event id.
pub fn event_nids(
    conn: &Connection,
    ids: &[String],
) -> Result<HashMap<String, (EventNid, Option<String>)>> {
    let mut stmt =
        conn.prepare_cached("SELECT stream_ordering, membership FROM events WHERE event_id = ?1")?;
    let mut found = HashMap::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = stmt
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            found.insert(id.clone(), row);
        }
    }
    Ok(found)
}

/// How a received event enters the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivedKind {
    /// Part of the timeline: becomes a forward extremity in place of its `prev_events`.
    Timeline,
    /// Allowed at its place in the DAG but not by the current state: stored with its state, never
    /// shown to clients, never a forward extremity.
    SoftFailed,
    /// Failed the authorization rules: kept only so that events citing it are refused too.
    Rejected(String),
}

/// Inserts a received event of `kind`, with its edges, and returns its stream ordering.
pub fn insert_received_event_txn(
    txn: &Connection,
    event: &NewEvent<'_>,
    kind: &ReceivedKind,
) -> Result<EventNid> {
    let (soft_failed, rejected_reason) = match kind {
        ReceivedKind::Timeline => return insert_event_txn(txn, event),
        ReceivedKind::SoftFailed => (true, None),
        ReceivedKind::Rejected(reason) => (false, Some(reason.as_str())),
    };
    txn.prepare_cached(
        "INSERT INTO events (event_id, room_id, sender, type, state_key, membership, depth,
                             origin_server_ts, json, state_before, state_after, soft_failed,
                             rejected_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12)",
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
        event.state_before,
        soft_failed,
        rejected_reason,
    ])?;
    let nid = txn.last_insert_rowid();
    Ok(nid)
}

/// Removes a key from a room's current state (state resolution left it out).
pub fn remove_current_state_txn(
    txn: &Connection,
    room_id: &str,
    kind: &str,
    state_key: &str,
) -> Result<()> {
    txn.prepare_cached(
        "DELETE FROM current_state WHERE room_id = ?1 AND type = ?2 AND state_key = ?3",
    )?
    .execute(params![room_id, kind, state_key])?;
    Ok(())
}

/// The current state of a room as ((type, state_key), event id) pairs.
pub fn current_state_ids(
    conn: &Connection,
    room_id: &str,
) -> Result<Vec<((String, String), String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.type, c.state_key, e.event_id FROM current_state c
         JOIN events e ON e.stream_ordering = c.event_nid WHERE c.room_id = ?1",
    )?;
    let rows = stmt.query_map([room_id], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The forward extremities of a room with the state group after each.
pub fn extremities_with_state(
    conn: &Connection,
    room_id: &str,
) -> Result<Vec<(String, Option<i64>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.event_id, e.state_after FROM forward_extremities f
         JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?1 ORDER BY e.stream_ordering",
    )?;
    let rows = stmt.query_map([room_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A state group holding exactly the room's current state, derived from `parent` (reused when
/// nothing differs): the state before a local event built on forked history.
pub fn group_of_current_state_txn(txn: &Connection, room_id: &str, parent: i64) -> Result<i64> {
    let base = super::state::load_state(txn, parent)?;
    let mut stmt = txn.prepare_cached(
        "SELECT type, state_key, event_nid FROM current_state WHERE room_id = ?1",
    )?;
    let current: Vec<(String, String, EventNid)> = stmt
        .query_map([room_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut seen = HashSet::with_capacity(current.len());
    let mut changes = Vec::new();
    for (kind, state_key, event) in current {
        let key = super::state::intern_key_txn(txn, &kind, &state_key)?;
        seen.insert(key);
        if base.get(&key) != Some(&event) {
            changes.push((key, Some(event)));
        }
    }
    changes.extend(
        base.keys()
            .filter(|key| !seen.contains(*key))
            .map(|key| (*key, None)),
    );
    if changes.is_empty() {
        return Ok(parent);
    }
    changes.sort_unstable();
    super::state::create_group_txn(txn, room_id, Some(parent), &changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::insert_room_txn;

    fn event<'a>(id: &'a str, prev: &'a [String]) -> NewEvent<'a> {
        crate::storage::test_message(id, prev, "{}")
    }

    #[test]
    fn only_timeline_events_move_the_forward_extremities() {
        let conn = crate::storage::migrated_in_memory();
        insert_room_txn(&conn, "!r:x", "11", "@a:x", 0).unwrap();
        insert_received_event_txn(&conn, &event("$a", &[]), &ReceivedKind::Timeline).unwrap();
        let prev = vec!["$a".to_owned()];
        insert_received_event_txn(&conn, &event("$soft", &prev), &ReceivedKind::SoftFailed)
            .unwrap();
        let rejected = ReceivedKind::Rejected("not allowed".into());
        insert_received_event_txn(&conn, &event("$bad", &prev), &rejected).unwrap();
        let extremities = extremities_with_state(&conn, "!r:x").unwrap();
        assert_eq!(extremities, [("$a".to_owned(), None)]);

        let ids = ["$soft", "$bad", "$none"].map(String::from);
        let stored = stored_events(&conn, &ids).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored[0].soft_failed && stored[0].rejected_reason.is_none());
        assert_eq!(stored[1].rejected_reason.as_deref(), Some("not allowed"));
        // Rejected events stay invisible to the ordinary reads.
        assert!(
            crate::storage::events::get_event(&conn, "$bad")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_transaction_keeps_its_first_answer() {
        let conn = crate::storage::migrated_in_memory();
        assert_eq!(transaction_response(&conn, "hs1", "t1").unwrap(), None);
        insert_transaction_response_txn(&conn, "hs1", "t1", "{\"pdus\":{}}", 1).unwrap();
        insert_transaction_response_txn(&conn, "hs1", "t1", "other", 2).unwrap();
        assert_eq!(
            transaction_response(&conn, "hs1", "t1").unwrap().as_deref(),
            Some("{\"pdus\":{}}")
        );
        assert_eq!(transaction_response(&conn, "hs2", "t1").unwrap(), None);
    }
}
