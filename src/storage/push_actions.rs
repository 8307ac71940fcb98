//! Tables `event_push_actions` and `push_progress`: what push rules decided for each event, per
//! member, and the evaluator's position in the event stream.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::events::{COLUMNS, EventRow, event_row_at};

/// An event that notifies a user.
pub struct PushAction {
    pub user_id: String,
    pub room_id: String,
    pub event_nid: i64,
    pub highlight: bool,
    pub actions: String,
}

pub fn progress(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT position FROM push_progress WHERE id = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// Events after `position`, oldest first, at most `limit`.
pub fn events_after(conn: &Connection, position: i64, limit: usize) -> Result<Vec<EventRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events e WHERE e.stream_ordering > ?1 AND e.outlier = 0
           AND e.rejected_reason IS NULL AND e.soft_failed = 0
         ORDER BY e.stream_ordering LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![position, limit as i64], |r| event_row_at(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores the actions of a batch and moves the evaluator past it, in one transaction.
pub fn record_batch_txn(txn: &Connection, actions: &[PushAction], position: i64) -> Result<()> {
    let mut insert = txn.prepare_cached(
        "INSERT OR REPLACE INTO event_push_actions (user_id, room_id, event_nid, highlight, actions)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for action in actions {
        insert.execute(params![
            action.user_id,
            action.room_id,
            action.event_nid,
            action.highlight,
            action.actions
        ])?;
    }
    txn.execute(
        "UPDATE push_progress SET position = ?1 WHERE id = 1",
        [position],
    )?;
    Ok(())
}

/// The stream position of the user's latest read receipt in a room (0 without one).
pub fn read_position(conn: &Connection, user_id: &str, room_id: &str) -> Result<i64> {
    let read: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(event_stream_ordering) FROM receipts
             WHERE room_id = ?1 AND user_id = ?2 AND receipt_type IN ('m.read', 'm.read.private')",
        )?
        .query_row(params![room_id, user_id], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(read.unwrap_or(0))
}

/// Notification and highlight counts of a user in a room since their latest read receipt.
pub fn unread_counts(conn: &Connection, user_id: &str, room_id: &str) -> Result<(u64, u64)> {
    let read = read_position(conn, user_id, room_id)?;
    let (notify, highlight): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*), SUM(highlight) FROM event_push_actions
             WHERE user_id = ?1 AND room_id = ?2 AND event_nid > ?3",
        )?
        .query_row(params![user_id, room_id, read], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok((notify.max(0) as u64, highlight.unwrap_or(0).max(0) as u64))
}

/// A user's notifications, newest first, below `before`: (room, event row, highlight, actions).
pub fn notifications(
    conn: &Connection,
    user_id: &str,
    before: i64,
    limit: usize,
    only_highlight: bool,
) -> Result<Vec<(EventRow, bool, String)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, p.highlight, p.actions FROM event_push_actions p
         JOIN events e ON e.stream_ordering = p.event_nid
         WHERE p.user_id = ?1 AND p.event_nid < ?2 AND (?3 = 0 OR p.highlight = 1)
         ORDER BY p.event_nid DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![user_id, before, only_highlight, limit as i64],
        |r| Ok((event_row_at(r, 0)?, r.get(7)?, r.get(8)?)),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
