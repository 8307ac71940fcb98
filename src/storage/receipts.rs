//! Table `receipts`: each user's latest read receipt per room, receipt type and thread, with its
//! position in the receipt stream; and the forward-only `m.fully_read` marker, which lives in
//! `account_data` but must be compared with the event it points at in the same transaction.

use ruma::{RoomId, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::{Result, account_data};

/// A receipt to store. `event_stream_ordering` is the stream position of the event read, which
/// orders receipts within the room.
pub struct NewReceipt<'a> {
    pub room_id: &'a str,
    pub receipt_type: &'a str,
    pub user_id: &'a str,
    /// '' for an unthreaded receipt, 'main', or a thread root's event id.
    pub thread_id: &'a str,
    pub event_id: &'a str,
    pub event_stream_ordering: i64,
    pub ts: i64,
}

/// A stored receipt as `/sync` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRow {
    pub room_id: String,
    pub receipt_type: String,
    pub user_id: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
    pub stream_id: i64,
}

/// Stores a receipt unless the user's receipt of that type and thread already points at the same
/// or a later event of the room. Returns the stream position taken, or `None` when nothing
/// changed. Positions are taken inside the write transaction, on the one writer thread, so "the
/// largest committed position" is always a complete prefix.
pub fn set_receipt_txn(txn: &Connection, receipt: &NewReceipt<'_>) -> Result<Option<i64>> {
    let current: Option<i64> = txn
        .prepare_cached(
            "SELECT event_stream_ordering FROM receipts
             WHERE room_id = ?1 AND receipt_type = ?2 AND user_id = ?3 AND thread_id = ?4",
        )?
        .query_row(
            params![
                receipt.room_id,
                receipt.receipt_type,
                receipt.user_id,
                receipt.thread_id
            ],
            |row| row.get(0),
        )
        .optional()?;
    if current.is_some_and(|at| at >= receipt.event_stream_ordering) {
        return Ok(None);
    }
    let stream_id = max_stream_id(txn)? + 1;
    txn.prepare_cached(
        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id,
                               event_stream_ordering, ts, stream_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (room_id, receipt_type, user_id, thread_id)
         DO UPDATE SET event_id = excluded.event_id,
                       event_stream_ordering = excluded.event_stream_ordering,
                       ts = excluded.ts, stream_id = excluded.stream_id",
    )?
    .execute(params![
        receipt.room_id,
        receipt.receipt_type,
        receipt.user_id,
        receipt.thread_id,
        receipt.event_id,
        receipt.event_stream_ordering,
        receipt.ts,
        stream_id
    ])?;
    if matches!(receipt.receipt_type, "m.read" | "m.read.private") {
        super::push_actions::recount_txn(txn, receipt.user_id, receipt.room_id)?;
    }
    Ok(Some(stream_id))
}

/// Moves the user's `m.fully_read` marker of a room (room account data) to `event_id`, unless it
/// already points at the same or a later event. Returns the account-data position taken, or
/// `None` when the marker stayed.
pub fn set_fully_read_txn(
    txn: &Connection,
    user_id: &UserId,
    room_id: &RoomId,
    event_id: &str,
    event_stream_ordering: i64,
) -> Result<Option<i64>> {
    let current = account_data::get_account_data(txn, user_id, Some(room_id), "m.fully_read")?;
    let current_event = current
        .as_ref()
        .and_then(|c| c.get("event_id"))
        .and_then(|e| e.as_str());
    if let Some(current_event) = current_event {
        let at: Option<i64> = txn
            .prepare_cached("SELECT stream_ordering FROM events WHERE event_id = ?1")?
            .query_row([current_event], |row| row.get(0))
            .optional()?;
        if at.is_some_and(|at| at >= event_stream_ordering) {
            return Ok(None);
        }
    }
    let content = json!({ "event_id": event_id });
    let position =
        account_data::set_account_data_txn(txn, user_id, Some(room_id), "m.fully_read", &content)?;
    Ok(Some(position))
}

/// Whether `event_id` belongs to the thread rooted at `root`: it is the root, or it relates to
/// the root with `m.thread`.
pub fn is_in_thread(conn: &Connection, event_id: &str, root: &str) -> Result<bool> {
    if event_id == root {
        return Ok(true);
    }
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM event_relations
             WHERE event_id = ?1 AND relates_to = ?2 AND rel_type = 'm.thread'",
        )?
        .query_row([event_id, root], |_| Ok(()))
        .optional()?
        .is_some())
}

const COLUMNS: &str = "room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id";

fn receipt_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReceiptRow> {
    Ok(ReceiptRow {
        room_id: row.get(0)?,
        receipt_type: row.get(1)?,
        user_id: row.get(2)?,
        thread_id: row.get(3)?,
        event_id: row.get(4)?,
        ts: row.get(5)?,
        stream_id: row.get(6)?,
    })
}

/// The receipts of one room whose latest change lies in `(since, upto]`, in stream order.
pub fn room_receipts_between(
    conn: &Connection,
    room_id: &str,
    since: i64,
    upto: i64,
) -> Result<Vec<ReceiptRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM receipts
         WHERE room_id = ?1 AND stream_id > ?2 AND stream_id <= ?3 ORDER BY stream_id"
    ))?;
    let rows = stmt.query_map(params![room_id, since, upto], receipt_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The receipts of every room whose latest change lies in `(since, upto]`, in stream order: the
/// cheap read for an incremental `/sync`, where the range is short.
pub fn receipts_between(conn: &Connection, since: i64, upto: i64) -> Result<Vec<ReceiptRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM receipts
         WHERE stream_id > ?1 AND stream_id <= ?2 ORDER BY stream_id"
    ))?;
    let rows = stmt.query_map(params![since, upto], receipt_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The position of the latest committed receipt of any user (0 before the first).
pub fn max_stream_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(stream_id), 0) FROM receipts")?
        .query_row([], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{events, migrated_in_memory, users};

    fn receipt<'a>(user: &'a str, event: &'a str, at: i64) -> NewReceipt<'a> {
        NewReceipt {
            room_id: "!room:x",
            receipt_type: "m.read",
            user_id: user,
            thread_id: "",
            event_id: event,
            event_stream_ordering: at,
            ts: 1000 + at,
        }
    }

    #[test]
    fn a_receipt_moves_only_forward_and_each_move_takes_the_next_position() {
        let conn = migrated_in_memory();
        events::insert_room_txn(&conn, "!room:x", "11", "@alice:x", 0).unwrap();
        assert_eq!(max_stream_id(&conn).unwrap(), 0);

        assert_eq!(
            set_receipt_txn(&conn, &receipt("@alice:x", "$b", 5)).unwrap(),
            Some(1)
        );
        assert_eq!(
            set_receipt_txn(&conn, &receipt("@alice:x", "$a", 3)).unwrap(),
            None
        );
        assert_eq!(
            set_receipt_txn(&conn, &receipt("@alice:x", "$b", 5)).unwrap(),
            None
        );
        assert_eq!(
            set_receipt_txn(&conn, &receipt("@bob:x", "$a", 3)).unwrap(),
            Some(2)
        );
        let threaded = NewReceipt {
            thread_id: "main",
            ..receipt("@alice:x", "$a", 3)
        };
        assert_eq!(
            set_receipt_txn(&conn, &threaded).unwrap(),
            Some(3),
            "another thread"
        );
        assert_eq!(
            set_receipt_txn(&conn, &receipt("@alice:x", "$c", 9)).unwrap(),
            Some(4)
        );

        let all = room_receipts_between(&conn, "!room:x", 0, 4).unwrap();
        let moved: Vec<(&str, &str, &str, i64)> = all
            .iter()
            .map(|r| {
                (
                    r.user_id.as_str(),
                    r.thread_id.as_str(),
                    r.event_id.as_str(),
                    r.stream_id,
                )
            })
            .collect();
        assert_eq!(
            moved,
            [
                ("@bob:x", "", "$a", 2),
                ("@alice:x", "main", "$a", 3),
                ("@alice:x", "", "$c", 4)
            ]
        );
        assert_eq!(receipts_between(&conn, 3, 4).unwrap().len(), 1);
        assert!(
            room_receipts_between(&conn, "!other:x", 0, 4)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_fully_read_marker_moves_only_forward() {
        let conn = migrated_in_memory();
        let alice: &UserId = "@alice:x".try_into().unwrap();
        let room: &RoomId = "!room:x".try_into().unwrap();
        users::insert_user_txn(&conn, alice, None, false).unwrap();
        // Marker targets are compared by the stream ordering of the event they point at.
        conn.execute_batch(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ('!room:x', '11', '@alice:x', 0);
             INSERT INTO events (stream_ordering, event_id, room_id, sender, type, depth, origin_server_ts, json)
             VALUES (7, '$late', '!room:x', '@alice:x', 'm.room.message', 3, 0, '{}');",
        )
        .unwrap();

        assert_eq!(
            set_fully_read_txn(&conn, alice, room, "$late", 7).unwrap(),
            Some(1)
        );
        assert_eq!(
            set_fully_read_txn(&conn, alice, room, "$early", 4).unwrap(),
            None
        );
        let marker = account_data::get_account_data(&conn, alice, Some(room), "m.fully_read");
        assert_eq!(marker.unwrap(), Some(json!({"event_id": "$late"})));
    }
}
