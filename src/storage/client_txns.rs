//! Table `client_txns`: which events were sent with a client transaction id, and when. The ids
//! themselves stay on the event row (`txn_device`, `txn_id`, also read by `/sync`); this
//! append-only list lets the server rebuild its in-memory index of recent sends
//! (`service::client_txns`) at start without an index over every event.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::state::EventNid;

/// An event sent with a transaction id, as the in-memory index needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentWithTxn {
    pub nid: EventNid,
    pub created_ts: i64,
    pub room_id: String,
    pub sender: String,
    pub device_id: String,
    pub txn_id: String,
}

/// Records that event `nid` was sent with a transaction id at `now_ms`.
pub fn record_txn(txn: &Connection, nid: EventNid, now_ms: i64) -> Result<()> {
    txn.prepare_cached("INSERT INTO client_txns (event_nid, created_ts) VALUES (?1, ?2)")?
        .execute(params![nid, now_ms])?;
    Ok(())
}

/// The events sent with a transaction id at or after `since_ms`, in stream order.
pub fn sent_since(conn: &Connection, since_ms: i64) -> Result<Vec<SentWithTxn>> {
    let mut stmt = conn.prepare(
        "SELECT c.event_nid, c.created_ts, e.room_id, e.sender, e.txn_device, e.txn_id
         FROM client_txns c JOIN events e ON e.stream_ordering = c.event_nid
         WHERE c.created_ts >= ?1 AND e.txn_device IS NOT NULL AND e.txn_id IS NOT NULL
         ORDER BY c.event_nid",
    )?;
    let rows = stmt.query_map([since_ms], |r| {
        Ok(SentWithTxn {
            nid: r.get(0)?,
            created_ts: r.get(1)?,
            room_id: r.get(2)?,
            sender: r.get(3)?,
            device_id: r.get(4)?,
            txn_id: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Forgets the sends recorded before `before_ms` (a full scan: run at start and rarely after).
pub fn forget_before_txn(txn: &Connection, before_ms: i64) -> Result<usize> {
    Ok(txn
        .prepare_cached("DELETE FROM client_txns WHERE created_ts < ?1")?
        .execute([before_ms])?)
}

/// The id of event `nid` when `device_id` of `sender` sent it into `room_id` with `txn_id`.
pub fn event_sent_with(
    conn: &Connection,
    nid: EventNid,
    room_id: &str,
    sender: &str,
    device_id: &str,
    txn_id: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT event_id FROM events WHERE stream_ordering = ?1 AND room_id = ?2
               AND sender = ?3 AND txn_device = ?4 AND txn_id = ?5",
        )?
        .query_row(params![nid, room_id, sender, device_id, txn_id], |r| {
            r.get(0)
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::{NewEvent, insert_event_txn, insert_room_txn};

    fn send(conn: &Connection, id: &str, txn: Option<(&str, &str)>) -> EventNid {
        let event = NewEvent {
            txn,
            ..crate::storage::test_message(id, &[], "{}")
        };
        insert_event_txn(conn, &event).unwrap()
    }

    #[test]
    fn sends_with_a_txn_id_are_listed_until_forgotten_and_match_only_their_own_key() {
        let conn = crate::storage::migrated_in_memory();
        insert_room_txn(&conn, "!r:x", "11", "@a:x", 0).unwrap();
        let first = send(&conn, "$first", Some(("DEV", "t1")));
        send(&conn, "$no_txn", None);
        let second = send(&conn, "$second", Some(("DEV", "t2")));

        let listed = sent_since(&conn, 0).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|s| (s.nid, s.txn_id.as_str()))
                .collect::<Vec<_>>(),
            [(first, "t1"), (second, "t2")]
        );
        assert_eq!(listed[0].device_id, "DEV");

        let found = |nid, device, txn_id| {
            event_sent_with(&conn, nid, "!r:x", "@a:x", device, txn_id).unwrap()
        };
        assert_eq!(found(first, "DEV", "t1").as_deref(), Some("$first"));
        assert_eq!(found(first, "DEV", "t2"), None);
        assert_eq!(found(first, "OTHER", "t1"), None);
        assert_eq!(found(second, "DEV", "t1"), None);

        let later = listed[1].created_ts + 1;
        assert_eq!(forget_before_txn(&conn, later).unwrap(), 2);
        assert!(sent_since(&conn, 0).unwrap().is_empty());
        // The event keeps its transaction id (for `/sync`'s `unsigned.transaction_id`).
        assert_eq!(found(first, "DEV", "t1").as_deref(), Some("$first"));
    }
}
