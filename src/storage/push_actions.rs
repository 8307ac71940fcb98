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
    /// `main`, or the root event id of the thread the event belongs to.
    pub thread_id: String,
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
        "INSERT OR REPLACE INTO event_push_actions
           (user_id, room_id, event_nid, highlight, actions, thread_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for action in actions {
        insert.execute(params![
            action.user_id,
            action.room_id,
            action.event_nid,
            action.highlight,
            action.actions,
            action.thread_id
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

/// Unread notification and highlight counts of a user in one room.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnreadCounts {
    /// The main timeline (events outside any thread).
    pub main: (u64, u64),
    /// Per thread root, in root order.
    pub threads: Vec<(String, u64, u64)>,
}

impl UnreadCounts {
    /// All threads folded into one count, for clients that did not ask for per-thread counts.
    pub fn total(&self) -> (u64, u64) {
        self.threads
            .iter()
            .fold(self.main, |(n, h), (_, tn, th)| (n + tn, h + th))
    }
}

/// Notification and highlight counts of a user in a room: an event is unread when it comes after
/// the user's latest unthreaded receipt and after their receipt in the event's own thread
/// (`main` for the main timeline).
pub fn unread_counts(conn: &Connection, user_id: &str, room_id: &str) -> Result<UnreadCounts> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.thread_id, COUNT(*), SUM(p.highlight) FROM event_push_actions p
         WHERE p.user_id = ?1 AND p.room_id = ?2
           AND p.event_nid > COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r
                WHERE r.room_id = ?2 AND r.user_id = ?1
                  AND r.receipt_type IN ('m.read', 'm.read.private')
                  AND r.thread_id IN ('', p.thread_id)), 0)
         GROUP BY p.thread_id ORDER BY p.thread_id",
    )?;
    let rows = stmt.query_map(params![user_id, room_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?.max(0) as u64,
            r.get::<_, Option<i64>>(2)?.unwrap_or(0).max(0) as u64,
        ))
    })?;
    let mut counts = UnreadCounts::default();
    for row in rows {
        let (thread, notify, highlight) = row?;
        if thread == "main" {
            counts.main = (notify, highlight);
        } else {
            counts.threads.push((thread, notify, highlight));
        }
    }
    Ok(counts)
}

/// The rooms where push actions were recorded for a user at event positions in (`after`,
/// `upto`]: their counts changed, perhaps after the events themselves were synced.
pub fn rooms_notified_between(
    conn: &Connection,
    user_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT room_id FROM event_push_actions
         WHERE user_id = ?1 AND event_nid > ?2 AND event_nid <= ?3",
    )?;
    let rows = stmt.query_map(params![user_id, after, upto], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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
