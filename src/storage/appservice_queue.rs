//! The appservice outbox's tables (`appservice_queue`, `appservice_transactions`,
//! `appservice_state`, `appservice_outbox_position`): events, ephemeral updates and to-device
//! messages waiting for each appservice, the one transaction each has open (its exact body), each
//! appservice's transaction ids and back-off, and how far the outbox has read the event stream.
//! Which appservice is interested in what, and when to send, is the service's concern
//! (`service/outbox/appservice.rs`).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::state::EventNid;

/// What a queue entry carries (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Event = 0,
    Ephemeral = 1,
    ToDevice = 2,
}

/// A queued entry: an event by stream ordering, or an ephemeral update's or to-device message's
/// JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub kind: EntryKind,
    pub event_nid: Option<EventNid>,
    pub json: Option<String>,
}

/// A new ephemeral update or to-device message for one appservice.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub appservice_id: String,
    pub kind: EntryKind,
    pub json: String,
    /// An older waiting entry of the appservice with the same key is replaced by this one.
    pub supersede_key: Option<String>,
}

/// One to-device message in a device's inbox.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub stream_id: i64,
    pub user_id: String,
    pub device_id: String,
    pub sender: String,
    pub event_type: String,
    pub content: String,
}

/// The stream ordering of the last event the outbox has handled.
pub fn outbox_position(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT stream_ordering FROM appservice_outbox_position WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Records the appservices of the configuration: one seen for the first time is sent nothing
/// older than the newest event now. Returns, per appservice, the stream ordering it starts
/// after; moves the outbox position up to the oldest of those when it was behind all of them
/// (nothing before interests anyone).
pub fn register_services_txn(txn: &Connection, ids: &[String]) -> Result<HashMap<String, i64>> {
    let newest: i64 = txn
        .prepare_cached("SELECT COALESCE(MAX(stream_ordering), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    let mut since = HashMap::new();
    for id in ids {
        txn.prepare_cached(
            "INSERT INTO appservice_state (appservice_id, since_stream) VALUES (?1, ?2)
             ON CONFLICT (appservice_id) DO NOTHING",
        )?
        .execute(params![id, newest])?;
        let from: i64 = txn
            .prepare_cached("SELECT since_stream FROM appservice_state WHERE appservice_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        since.insert(id.clone(), from);
    }
    let oldest = since.values().copied().min().unwrap_or(newest);
    txn.prepare_cached(
        "INSERT INTO appservice_outbox_position (id, stream_ordering) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET stream_ordering = MAX(stream_ordering, excluded.stream_ordering)",
    )?
    .execute([oldest])?;
    Ok(since)
}

/// The users of a room who are joined or invited now.
pub fn joined_or_invited(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM room_memberships
         WHERE room_id = ?1 AND membership IN ('join', 'invite')",
    )?;
    let rows = stmt.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The content of a room's current `m.room.canonical_alias` event (the stored JSON's `content`).
pub fn canonical_alias_content(conn: &Connection, room_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT json_extract(e.json, '$.content') FROM current_state cs
             JOIN events e ON e.stream_ordering = cs.event_nid
             WHERE cs.room_id = ?1 AND cs.type = 'm.room.canonical_alias' AND cs.state_key = ''",
        )?
        .query_row([room_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Queues the events `(appservice, event)` and moves the outbox's position to `position`, in one
/// transaction.
pub fn enqueue_events_txn(
    txn: &Connection,
    entries: &[(String, EventNid)],
    position: i64,
) -> Result<()> {
    let mut insert = txn.prepare_cached(
        "INSERT INTO appservice_queue (appservice_id, kind, event_nid) VALUES (?1, 0, ?2)",
    )?;
    for (service, nid) in entries {
        insert.execute(params![service, nid])?;
    }
    txn.prepare_cached(
        "INSERT INTO appservice_outbox_position (id, stream_ordering) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET stream_ordering = MAX(stream_ordering, excluded.stream_ordering)",
    )?
    .execute([position])?;
    Ok(())
}

/// Queues ephemeral updates and to-device messages, each replacing the waiting entry of its
/// appservice with the same `supersede_key`.
pub fn enqueue_json_txn(txn: &Connection, entries: &[NewEntry]) -> Result<()> {
    let mut supersede = txn.prepare_cached(
        "DELETE FROM appservice_queue WHERE appservice_id = ?1 AND supersede_key = ?2",
    )?;
    let mut insert = txn.prepare_cached(
        "INSERT INTO appservice_queue (appservice_id, kind, json, supersede_key)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for entry in entries {
        if let Some(key) = &entry.supersede_key {
            supersede.execute(params![entry.appservice_id, key])?;
        }
        insert.execute(params![
            entry.appservice_id,
            entry.kind as i64,
            entry.json,
            entry.supersede_key
        ])?;
    }
    Ok(())
}

/// Every appservice with an open transaction or queued entries, with the time its back-off ends
/// (`None`: not backing off). One index probe per appservice, however long its queue.
pub fn pending_services(conn: &Connection) -> Result<Vec<(String, Option<i64>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.appservice_id, s.retry_ts FROM appservice_state s
         WHERE EXISTS (SELECT 1 FROM appservice_queue q WHERE q.appservice_id = s.appservice_id)
            OR EXISTS (SELECT 1 FROM appservice_transactions t
                       WHERE t.appservice_id = s.appservice_id)
         ORDER BY s.appservice_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The appservice's open transaction: its id and body.
pub fn open_transaction(conn: &Connection, service: &str) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT txn_id, body FROM appservice_transactions
             WHERE appservice_id = ?1 ORDER BY txn_id LIMIT 1",
        )?
        .query_row([service], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The next entries for the appservice: up to `max_each` of each kind, in queue order.
pub fn next_entries(conn: &Connection, service: &str, max_each: usize) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_nid, json FROM appservice_queue
         WHERE appservice_id = ?1 AND kind = ?2 ORDER BY id LIMIT ?3",
    )?;
    let mut entries = Vec::new();
    for kind in [EntryKind::Event, EntryKind::Ephemeral, EntryKind::ToDevice] {
        let rows = stmt.query_map(params![service, kind as i64, max_each as i64], |r| {
            Ok(Entry {
                id: r.get(0)?,
                kind,
                event_nid: r.get(1)?,
                json: r.get(2)?,
            })
        })?;
        entries.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    }
    Ok(entries)
}

/// Makes the appservice's next transaction: the next id, `body` stored, and the entries it carries
/// (`entry_ids`) taken off the queue, all in one write. Returns its id.
pub fn create_transaction_txn(
    txn: &Connection,
    service: &str,
    entry_ids: &[i64],
    body: &str,
) -> Result<i64> {
    let txn_id: i64 = txn
        .prepare_cached(
            "UPDATE appservice_state SET last_txn_id = last_txn_id + 1 WHERE appservice_id = ?1
             RETURNING last_txn_id",
        )?
        .query_row([service], |r| r.get(0))?;
    txn.prepare_cached(
        "INSERT INTO appservice_transactions (appservice_id, txn_id, body) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![service, txn_id, body])?;
    let mut delete = txn.prepare_cached("DELETE FROM appservice_queue WHERE id = ?1")?;
    for id in entry_ids {
        delete.execute([id])?;
    }
    Ok(txn_id)
}

/// The appservice accepted transaction `txn_id`: it goes, and so does any back-off.
pub fn complete_transaction_txn(txn: &Connection, service: &str, txn_id: i64) -> Result<()> {
    txn.prepare_cached(
        "DELETE FROM appservice_transactions WHERE appservice_id = ?1 AND txn_id = ?2",
    )?
    .execute(params![service, txn_id])?;
    clear_backoff_txn(txn, service)
}

/// Records one more failure in a row for the appservice and sets when it is tried again from
/// how many there have been (`wait_ms`); returns that wait.
pub fn record_failure_txn(
    txn: &Connection,
    service: &str,
    now_ms: i64,
    wait_ms: impl Fn(i64) -> i64,
) -> Result<i64> {
    let failures: i64 = txn
        .prepare_cached(
            "UPDATE appservice_state SET failures = failures + 1 WHERE appservice_id = ?1
             RETURNING failures",
        )?
        .query_row([service], |r| r.get(0))?;
    let wait = wait_ms(failures);
    txn.prepare_cached("UPDATE appservice_state SET retry_ts = ?2 WHERE appservice_id = ?1")?
        .execute(params![service, now_ms + wait])?;
    Ok(wait)
}

/// Ends the appservice's back-off: it is tried at once, and its next failure counts as the first.
pub fn clear_backoff_txn(txn: &Connection, service: &str) -> Result<()> {
    txn.prepare_cached(
        "UPDATE appservice_state SET failures = 0, retry_ts = NULL WHERE appservice_id = ?1",
    )?
    .execute([service])?;
    Ok(())
}

/// The position of the newest to-device message ever queued for a device (0 before the first).
pub fn newest_to_device(conn: &Connection) -> Result<i64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'device_inbox'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0))
}

/// Up to `limit` to-device messages of any device after position `after`, in order.
pub fn to_device_after(conn: &Connection, after: i64, limit: usize) -> Result<Vec<InboxRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stream_id, user_id, device_id, sender, event_type, content FROM device_inbox
         WHERE stream_id > ?1 ORDER BY stream_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit as i64], |r| {
        Ok(InboxRow {
            stream_id: r.get(0)?,
            user_id: r.get(1)?,
            device_id: r.get(2)?,
            sender: r.get(3)?,
            event_type: r.get(4)?,
            content: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(conn: &Connection, nid: i64) {
        if nid == 1 {
            crate::storage::events::insert_room_txn(conn, "!r:hs1", "11", "@a:hs1", 0).unwrap();
        }
        conn.execute(
            "INSERT INTO events (stream_ordering, event_id, room_id, sender, type, depth,
                                 origin_server_ts, json)
             VALUES (?1, ?2, '!r:hs1', '@a:hs1', 'm.room.message', 1, 0, '{}')",
            params![nid, format!("$e{nid}")],
        )
        .unwrap();
    }

    #[test]
    fn a_new_appservice_starts_at_the_newest_event() {
        let conn = crate::storage::migrated_in_memory();
        for nid in 1..=3 {
            event(&conn, nid);
        }
        let since = register_services_txn(&conn, &["irc".into()]).unwrap();
        assert_eq!(since["irc"], 3);
        assert_eq!(outbox_position(&conn).unwrap(), 3);
        event(&conn, 4);
        // Seen before: it keeps its start.
        let since = register_services_txn(&conn, &["irc".into()]).unwrap();
        assert_eq!(since["irc"], 3);
    }

    #[test]
    fn transactions_are_repeated_until_accepted_and_ids_increase() {
        let conn = crate::storage::migrated_in_memory();
        register_services_txn(&conn, &["irc".into()]).unwrap();
        for nid in 1..=3 {
            event(&conn, nid);
        }
        let entries: Vec<(String, i64)> = (1..=3).map(|n| ("irc".to_string(), n)).collect();
        enqueue_events_txn(&conn, &entries, 3).unwrap();
        let typing = |users: &str| NewEntry {
            appservice_id: "irc".into(),
            kind: EntryKind::Ephemeral,
            json: users.into(),
            supersede_key: Some("m.typing !r:hs1".into()),
        };
        enqueue_json_txn(&conn, &[typing("a"), typing("b")]).unwrap();
        assert_eq!(pending_services(&conn).unwrap(), [("irc".into(), None)]);

        let next = next_entries(&conn, "irc", 2).unwrap();
        let nids: Vec<_> = next.iter().filter_map(|e| e.event_nid).collect();
        assert_eq!(nids, [1, 2]);
        let json: Vec<_> = next.iter().filter_map(|e| e.json.as_deref()).collect();
        assert_eq!(json, ["b"], "the newer typing replaced the older");
        let ids: Vec<i64> = next.iter().map(|e| e.id).collect();
        assert_eq!(
            create_transaction_txn(&conn, "irc", &ids, "body1").unwrap(),
            1
        );
        assert_eq!(
            open_transaction(&conn, "irc").unwrap(),
            Some((1, "body1".into()))
        );
        let wait = record_failure_txn(&conn, "irc", 100, |n| n * 2000).unwrap();
        assert_eq!(wait, 2000);
        assert_eq!(
            pending_services(&conn).unwrap(),
            [("irc".into(), Some(2100))]
        );
        complete_transaction_txn(&conn, "irc", 1).unwrap();
        assert_eq!(pending_services(&conn).unwrap(), [("irc".into(), None)]);

        let next = next_entries(&conn, "irc", 2).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(
            create_transaction_txn(&conn, "irc", &[next[0].id], "body2").unwrap(),
            2
        );
        complete_transaction_txn(&conn, "irc", 2).unwrap();
        assert!(pending_services(&conn).unwrap().is_empty());
    }
}
