//! Tables `event_push_actions`, `push_summary` and `push_progress`: what push rules decided for
//! each event, per member; the unread counts that follow from them, per user, room and thread
//! (incremented as actions are recorded, recounted when a read receipt moves); and the
//! evaluator's position in the event stream.

use std::collections::{BTreeMap, HashMap};

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
/// Events the user has read already are not counted (a receipt can overtake the evaluator).
/// Actions recorded before (the same user and event) are left as they are and not counted again,
/// so recording is idempotent.
pub fn record_batch_txn(txn: &Connection, actions: &[PushAction], position: i64) -> Result<()> {
    record_evaluated_txn(txn, actions)?;
    txn.execute(
        "UPDATE push_progress SET position = ?1 WHERE id = 1",
        [position],
    )?;
    Ok(())
}

/// Stores part of a batch without moving the evaluator, which [`record_batch_txn`] does with the
/// batch's last part; recording is idempotent, so a batch cut short is recorded again whole.
pub fn record_evaluated_txn(txn: &Connection, actions: &[PushAction]) -> Result<()> {
    record_txn(txn, actions, true)
}

/// Stores the actions of an event being written in the same transaction, and counts them: it
/// is the newest event of the stream, which no receipt can have reached yet.
pub fn record_new_event_actions_txn(txn: &Connection, actions: &[PushAction]) -> Result<()> {
    record_txn(txn, actions, false)
}

fn record_txn(txn: &Connection, actions: &[PushAction], check_receipts: bool) -> Result<()> {
    let mut insert = txn.prepare_cached(
        "INSERT INTO event_push_actions
           (user_id, room_id, event_nid, highlight, actions, thread_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (user_id, event_nid) DO NOTHING",
    )?;
    let mut count = txn.prepare_cached(
        "INSERT INTO push_summary (user_id, room_id, thread_id, notify, highlight)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id, room_id, thread_id)
         DO UPDATE SET notify = notify + excluded.notify,
                       highlight = highlight + excluded.highlight",
    )?;
    // Unread increments summed per user, room and thread, against each user's receipts in the
    // room read once: an event already read (a receipt can overtake the evaluator) is not unread.
    let mut read: HashMap<(&str, &str), HashMap<String, i64>> = HashMap::new();
    let mut unread: BTreeMap<(&str, &str, &str), (i64, i64)> = BTreeMap::new();
    for action in actions {
        let inserted = insert.execute(params![
            action.user_id,
            action.room_id,
            action.event_nid,
            action.highlight,
            action.actions,
            action.thread_id
        ])?;
        if inserted == 0 {
            continue;
        }
        let key = (action.user_id.as_str(), action.room_id.as_str());
        if !check_receipts {
            let entry = unread
                .entry((key.0, key.1, action.thread_id.as_str()))
                .or_default();
            entry.0 += 1;
            entry.1 += i64::from(action.highlight);
            continue;
        }
        let receipts = match read.entry(key) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(receipts_by_thread(txn, key.0, key.1)?)
            }
        };
        let read_up_to = receipts
            .get("")
            .copied()
            .unwrap_or(0)
            .max(receipts.get(&action.thread_id).copied().unwrap_or(0));
        if action.event_nid > read_up_to {
            let entry = unread
                .entry((key.0, key.1, action.thread_id.as_str()))
                .or_default();
            entry.0 += 1;
            entry.1 += i64::from(action.highlight);
        }
    }
    for ((user, room, thread), (notify, highlight)) in unread {
        count.execute(params![user, room, thread, notify, highlight])?;
    }
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

/// A user's read positions in a room per receipt thread ('' for unthreaded receipts, `main`, or a
/// thread root), the later of `m.read` and `m.read.private`.
fn receipts_by_thread(
    conn: &Connection,
    user_id: &str,
    room_id: &str,
) -> Result<HashMap<String, i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT thread_id, MAX(event_stream_ordering) FROM receipts
         WHERE room_id = ?1 AND user_id = ?2 AND receipt_type IN ('m.read', 'm.read.private')
         GROUP BY thread_id",
    )?;
    let rows = stmt.query_map(params![room_id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Notification and highlight counts of a user in a room: an event is unread when it comes after
/// the user's latest unthreaded receipt and after their receipt in the event's own thread
/// (`main` for the main timeline). Read from `push_summary`: no counting.
pub fn unread_counts(conn: &Connection, user_id: &str, room_id: &str) -> Result<UnreadCounts> {
    let mut stmt = conn.prepare_cached(
        "SELECT thread_id, notify, highlight FROM push_summary
         WHERE user_id = ?1 AND room_id = ?2 AND notify > 0 ORDER BY thread_id",
    )?;
    let rows = stmt.query_map(params![user_id, room_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?.max(0) as u64,
            r.get::<_, i64>(2)?.max(0) as u64,
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

/// Counts a user's unread notifications in a room afresh, after one of their read receipts moved.
/// Only the user's actions after the unthreaded receipt are read (none before it is unread), so
/// the cost follows what came since, not the room's history.
pub fn recount_txn(txn: &Connection, user_id: &str, room_id: &str) -> Result<()> {
    txn.prepare_cached("DELETE FROM push_summary WHERE user_id = ?1 AND room_id = ?2")?
        .execute(params![user_id, room_id])?;
    txn.prepare_cached(RECOUNT)?
        .execute(params![user_id, room_id])?;
    Ok(())
}

const RECOUNT: &str = "INSERT INTO push_summary (user_id, room_id, thread_id, notify, highlight)
         SELECT p.user_id, p.room_id, p.thread_id, COUNT(*), SUM(p.highlight)
         FROM event_push_actions p
         WHERE p.user_id = ?1 AND p.room_id = ?2
           AND p.event_nid > COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r
                WHERE r.room_id = ?2 AND r.user_id = ?1
                  AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = ''), 0)
           AND p.event_nid > COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r
                WHERE r.room_id = ?2 AND r.user_id = ?1
                  AND r.receipt_type IN ('m.read', 'm.read.private')
                  AND r.thread_id IN ('', p.thread_id)), 0)
         GROUP BY p.thread_id";

/// The rooms where push actions were recorded for a user at event positions in (`after`,
/// `upto`]: their counts changed, perhaps after the events themselves were synced.
pub fn rooms_notified_between(
    conn: &Connection,
    user_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<String>> {
    // Deduplicated here: `DISTINCT` builds a temporary b-tree for every query, which was most of
    // the cost of this read on the sync fast path.
    let mut stmt = conn.prepare_cached(
        "SELECT room_id FROM event_push_actions
         WHERE user_id = ?1 AND event_nid > ?2 AND event_nid <= ?3",
    )?;
    let rooms = stmt.query_map(params![user_id, after, upto], |r| r.get::<_, String>(0))?;
    let rooms: std::collections::BTreeSet<String> = rooms.collect::<rusqlite::Result<_>>()?;
    Ok(rooms.into_iter().collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrated_in_memory;

    fn action(nid: i64, thread: &str, highlight: bool) -> PushAction {
        PushAction {
            user_id: "@bob:x".into(),
            room_id: "!a:x".into(),
            event_nid: nid,
            highlight,
            actions: "[]".into(),
            thread_id: thread.into(),
        }
    }

    fn read(conn: &Connection, thread: &str, nid: i64) {
        conn.execute(
            "INSERT OR REPLACE INTO receipts (room_id, receipt_type, user_id, thread_id, event_id,
               event_stream_ordering, ts, stream_id)
             VALUES ('!a:x', 'm.read', '@bob:x', ?1, '$e', ?2, 0,
               (SELECT COALESCE(MAX(stream_id), 0) + 1 FROM receipts))",
            params![thread, nid],
        )
        .unwrap();
        recount_txn(conn, "@bob:x", "!a:x").unwrap();
    }

    /// A database holding the room `!a:x`.
    fn with_room() -> Connection {
        let conn = migrated_in_memory();
        conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts)
             VALUES ('!a:x', '11', '@alice:x', 0)",
            [],
        )
        .unwrap();
        conn
    }

    #[test]
    fn counts_follow_recorded_actions_and_receipts_per_thread() {
        let conn = with_room();
        let batch = [
            action(10, "main", false),
            action(11, "main", true),
            action(12, "$root", false),
        ];
        record_batch_txn(&conn, &batch, 12).unwrap();
        // Recording the same actions again (a retried batch) counts nothing twice.
        record_batch_txn(&conn, &batch, 12).unwrap();
        let counts = unread_counts(&conn, "@bob:x", "!a:x").unwrap();
        assert_eq!(counts.main, (2, 1));
        assert_eq!(counts.threads, vec![("$root".to_owned(), 1, 0)]);
        assert_eq!(counts.total(), (3, 1));

        read(&conn, "main", 10);
        let counts = unread_counts(&conn, "@bob:x", "!a:x").unwrap();
        assert_eq!((counts.main, counts.threads.len()), ((1, 1), 1));

        // A receipt that overtook the evaluator: the late action is already read.
        read(&conn, "", 20);
        record_batch_txn(&conn, &[action(15, "main", false)], 15).unwrap();
        assert_eq!(
            unread_counts(&conn, "@bob:x", "!a:x").unwrap(),
            UnreadCounts::default()
        );
        record_batch_txn(&conn, &[action(21, "$root", false)], 21).unwrap();
        let counts = unread_counts(&conn, "@bob:x", "!a:x").unwrap();
        assert_eq!(counts.threads, vec![("$root".to_owned(), 1, 0)]);
    }

    #[test]
    fn actions_recorded_with_their_event_are_not_counted_again_by_the_evaluator() {
        let conn = with_room();
        record_new_event_actions_txn(&conn, &[action(30, "main", true)]).unwrap();
        assert_eq!(unread_counts(&conn, "@bob:x", "!a:x").unwrap().main, (1, 1));
        // The evaluator going over the same event (after a restart) changes nothing.
        record_batch_txn(
            &conn,
            &[action(30, "main", true), action(31, "main", false)],
            31,
        )
        .unwrap();
        assert_eq!(unread_counts(&conn, "@bob:x", "!a:x").unwrap().main, (2, 1));
        assert_eq!(progress(&conn).unwrap(), 31);
    }

    #[test]
    fn a_recount_seeks_past_the_unthreaded_receipt_instead_of_reading_the_rooms_history() {
        let conn = with_room();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {RECOUNT}"))
            .unwrap()
            .query_map(params!["@bob:x", "!a:x"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH p ")
                    && step.contains("user_id=? AND event_nid>?")),
            "{plan:#?}"
        );
        // Thread receipts still count: an old event in a thread read past stays read.
        record_batch_txn(
            &conn,
            &[action(5, "$t", false), action(6, "main", false)],
            6,
        )
        .unwrap();
        read(&conn, "$t", 5);
        let counts = unread_counts(&conn, "@bob:x", "!a:x").unwrap();
        assert_eq!((counts.main, counts.threads.len()), ((1, 0), 0));
    }
}
