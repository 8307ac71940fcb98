//! Table `pushers`: each user's pushers (where notifications are sent) with the delivery position
//! and back-off of each, plus the reads delivery needs from `event_push_actions` (a pusher's
//! pending notifications, the user's unread rooms).

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::events::{COLUMNS, EventRow, event_row_at};

/// The identity of a pusher: one user's pusher for one app and push key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PusherKey {
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
}

/// A pusher as stored.
#[derive(Debug, Clone)]
pub struct PusherRow {
    pub key: PusherKey,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The JSON object `data`, as the client set it.
    pub data: String,
    pub pushkey_ts: i64,
    pub last_event_nid: i64,
    pub failures: i64,
    pub retry_ts: Option<i64>,
}

/// What a client sets; the delivery state is the server's.
pub struct NewPusher<'a> {
    pub key: &'a PusherKey,
    pub kind: &'a str,
    pub app_display_name: &'a str,
    pub device_display_name: &'a str,
    pub profile_tag: Option<&'a str>,
    pub lang: &'a str,
    pub data: &'a str,
    pub device_id: Option<&'a str>,
    pub pushkey_ts: i64,
}

/// A notification waiting for a pusher: the event, whether it highlights, and the actions JSON.
pub struct PendingNotification {
    pub event: EventRow,
    pub highlight: bool,
    pub actions: String,
}

const PUSHER_COLUMNS: &str = "user_id, app_id, pushkey, kind, app_display_name,
    device_display_name, profile_tag, lang, data, pushkey_ts, last_event_nid, failures, retry_ts";

fn pusher_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PusherRow> {
    Ok(PusherRow {
        key: PusherKey {
            user_id: r.get(0)?,
            app_id: r.get(1)?,
            pushkey: r.get(2)?,
        },
        kind: r.get(3)?,
        app_display_name: r.get(4)?,
        device_display_name: r.get(5)?,
        profile_tag: r.get(6)?,
        lang: r.get(7)?,
        data: r.get(8)?,
        pushkey_ts: r.get(9)?,
        last_event_nid: r.get(10)?,
        failures: r.get(11)?,
        retry_ts: r.get(12)?,
    })
}

/// Creates or updates a pusher. A new pusher starts at the push evaluator's current position, so
/// only notifications recorded from now on are sent to it; an updated one keeps its position and
/// starts afresh without back-off (its gateway may have changed).
pub fn upsert_pusher_txn(txn: &Connection, pusher: &NewPusher<'_>) -> Result<()> {
    let position = super::push_actions::progress(txn)?;
    txn.prepare_cached(
        "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name,
             device_display_name, profile_tag, lang, data, device_id, pushkey_ts, last_event_nid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
             kind = excluded.kind, app_display_name = excluded.app_display_name,
             device_display_name = excluded.device_display_name,
             profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,
             device_id = excluded.device_id, pushkey_ts = excluded.pushkey_ts,
             failures = 0, retry_ts = NULL",
    )?
    .execute(params![
        pusher.key.user_id,
        pusher.key.app_id,
        pusher.key.pushkey,
        pusher.kind,
        pusher.app_display_name,
        pusher.device_display_name,
        pusher.profile_tag,
        pusher.lang,
        pusher.data,
        pusher.device_id,
        pusher.pushkey_ts,
        position,
    ])?;
    Ok(())
}

/// Deletes one pusher; whether it existed.
pub fn delete_pusher_txn(txn: &Connection, key: &PusherKey) -> Result<bool> {
    let deleted = txn
        .prepare_cached("DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3")?
        .execute(params![key.user_id, key.app_id, key.pushkey])?;
    Ok(deleted > 0)
}

/// Deletes the pushers of other users with the same app and push key (the push key now belongs to
/// this user's device).
pub fn delete_others_with_key_txn(txn: &Connection, key: &PusherKey) -> Result<()> {
    txn.prepare_cached("DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2 AND user_id <> ?3")?
        .execute(params![key.app_id, key.pushkey, key.user_id])?;
    Ok(())
}

/// A user's pushers, in the order they are listed to the client.
pub fn user_pushers(conn: &Connection, user_id: &str) -> Result<Vec<PusherRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 ORDER BY app_id, pushkey"
    ))?;
    let rows = stmt.query_map([user_id], pusher_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get_pusher(conn: &Connection, key: &PusherKey) -> Result<Option<PusherRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PUSHER_COLUMNS} FROM pushers
             WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3"
        ))?
        .query_row(params![key.user_id, key.app_id, key.pushkey], pusher_row)
        .optional()?)
}

/// Pushers of `kind` with notifications after their position, due or not (`retry_ts` says when
/// a failing one may try again).
pub fn pushers_with_pending(conn: &Connection, kind: &str) -> Result<Vec<PusherRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PUSHER_COLUMNS} FROM pushers u WHERE u.kind = ?1 AND EXISTS (
             SELECT 1 FROM event_push_actions p
             JOIN events e ON e.stream_ordering = p.event_nid
             WHERE p.user_id = u.user_id AND p.event_nid > u.last_event_nid)"
    ))?;
    let rows = stmt.query_map([kind], pusher_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The user's notifications after `after`, oldest first, at most `limit`.
pub fn pending_notifications(
    conn: &Connection,
    user_id: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<PendingNotification>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, p.highlight, p.actions FROM event_push_actions p
         JOIN events e ON e.stream_ordering = p.event_nid
         WHERE p.user_id = ?1 AND p.event_nid > ?2
         ORDER BY p.event_nid LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![user_id, after, limit as i64], |r| {
        Ok(PendingNotification {
            event: event_row_at(r, 0)?,
            highlight: r.get(7)?,
            actions: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The read receipts an event of the user's notifications is measured against: an event is read
/// once it is at or before the user's latest unthreaded receipt in its room, or their latest
/// receipt in the event's own thread (`main` for the main timeline) — as unread counts have it.
const READ_UP_TO: &str = "COALESCE((SELECT MAX(r.event_stream_ordering) FROM receipts r
    WHERE r.room_id = p.room_id AND r.user_id = p.user_id
      AND r.receipt_type IN ('m.read', 'm.read.private')
      AND r.thread_id IN ('', p.thread_id)), 0)";

/// Whether the user has read the event of one of their notifications.
pub fn is_read(conn: &Connection, user_id: &str, room_id: &str, event_nid: i64) -> Result<bool> {
    let read: Option<bool> = conn
        .prepare_cached(&format!(
            "SELECT p.event_nid <= {READ_UP_TO} FROM event_push_actions p
             WHERE p.user_id = ?1 AND p.room_id = ?2 AND p.event_nid = ?3"
        ))?
        .query_row(params![user_id, room_id, event_nid], |r| r.get(0))
        .optional()?;
    Ok(read.unwrap_or(true))
}

/// How many of the rooms the user is joined to hold unread notifications: the badge count a push
/// gateway shows.
pub fn unread_rooms(conn: &Connection, user_id: &str) -> Result<u64> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT COUNT(DISTINCT s.room_id) FROM push_summary s
             JOIN room_memberships m
               ON m.room_id = s.room_id AND m.user_id = s.user_id AND m.membership = 'join'
             WHERE s.user_id = ?1 AND s.notify > 0",
        )?
        .query_row([user_id], |r| r.get(0))?;
    Ok(count.max(0) as u64)
}

/// Moves a pusher past a handled notification and clears its back-off. Never moves it back, and
/// does nothing to a pusher deleted meanwhile.
pub fn advance_pusher_txn(txn: &Connection, key: &PusherKey, event_nid: i64) -> Result<()> {
    txn.prepare_cached(
        "UPDATE pushers SET last_event_nid = MAX(last_event_nid, ?4), failures = 0, retry_ts = NULL
         WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
    )?
    .execute(params![key.user_id, key.app_id, key.pushkey, event_nid])?;
    Ok(())
}

/// Records a failed attempt: the pusher tries again at `retry_ts`.
pub fn record_failure_txn(
    txn: &Connection,
    key: &PusherKey,
    failures: i64,
    retry_ts: i64,
) -> Result<()> {
    txn.prepare_cached(
        "UPDATE pushers SET failures = ?4, retry_ts = ?5
         WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
    )?
    .execute(params![
        key.user_id,
        key.app_id,
        key.pushkey,
        failures,
        retry_ts
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrated_in_memory;

    fn key(user: &str, pushkey: &str) -> PusherKey {
        PusherKey {
            user_id: user.into(),
            app_id: "care.plexus.app".into(),
            pushkey: pushkey.into(),
        }
    }

    fn set(conn: &Connection, key: &PusherKey, device: Option<&str>, lang: &str) {
        upsert_pusher_txn(
            conn,
            &NewPusher {
                key,
                kind: "http",
                app_display_name: "App",
                device_display_name: "Phone",
                profile_tag: None,
                lang,
                data: r#"{"url":"http://gw/_matrix/push/v1/notify"}"#,
                device_id: device,
                pushkey_ts: 1,
            },
        )
        .unwrap();
    }

    fn add_device(conn: &Connection, user: &str, device: &str) {
        conn.execute(
            "INSERT INTO users (user_id, created_ts) VALUES (?1, 0) ON CONFLICT DO NOTHING",
            [user],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO devices (user_id, device_id, created_ts) VALUES (?1, ?2, 0)",
            [user, device],
        )
        .unwrap();
    }

    #[test]
    fn a_new_pusher_starts_at_the_evaluator_position_and_an_update_keeps_its_own() {
        let conn = migrated_in_memory();
        conn.execute("UPDATE push_progress SET position = 40", [])
            .unwrap();
        let alice = key("@alice:x", "k1");
        set(&conn, &alice, None, "en");
        assert_eq!(
            get_pusher(&conn, &alice).unwrap().unwrap().last_event_nid,
            40
        );

        advance_pusher_txn(&conn, &alice, 45).unwrap();
        record_failure_txn(&conn, &alice, 3, 99).unwrap();
        conn.execute("UPDATE push_progress SET position = 50", [])
            .unwrap();
        set(&conn, &alice, None, "de");
        let row = get_pusher(&conn, &alice).unwrap().unwrap();
        assert_eq!(
            (
                row.last_event_nid,
                row.failures,
                row.retry_ts,
                row.lang.as_str()
            ),
            (45, 0, None, "de")
        );
        advance_pusher_txn(&conn, &alice, 44).unwrap();
        assert_eq!(
            get_pusher(&conn, &alice).unwrap().unwrap().last_event_nid,
            45,
            "a position never moves back"
        );
    }

    #[test]
    fn read_follows_unthreaded_and_own_thread_receipts_and_the_badge_counts_joined_rooms() {
        let conn = migrated_in_memory();
        let notify = |room: &str, nid: i64, thread: &str| {
            let action = crate::storage::push_actions::PushAction {
                user_id: "@bob:x".into(),
                room_id: room.into(),
                event_nid: nid,
                highlight: false,
                actions: "[]".into(),
                thread_id: thread.into(),
            };
            crate::storage::push_actions::record_batch_txn(&conn, &[action], nid).unwrap();
        };
        let receipt = |room: &str, thread: &str, nid: i64| {
            conn.execute(
                "INSERT OR REPLACE INTO receipts (room_id, receipt_type, user_id, thread_id,
                   event_id, event_stream_ordering, ts, stream_id)
                 VALUES (?1, 'm.read', '@bob:x', ?2, '$e', ?3, 0,
                   (SELECT COALESCE(MAX(stream_id), 0) + 1 FROM receipts))",
                params![room, thread, nid],
            )
            .unwrap();
            crate::storage::push_actions::recount_txn(&conn, "@bob:x", room).unwrap();
        };
        for room in ["!a:x", "!b:x", "!left:x"] {
            conn.execute(
                "INSERT INTO rooms (room_id, room_version, creator, created_ts)
                 VALUES (?1, '11', '@alice:x', 0)",
                [room],
            )
            .unwrap();
            let membership = if room == "!left:x" { "leave" } else { "join" };
            conn.execute(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_nid)
                 VALUES (?1, '@bob:x', ?2, 1)",
                params![room, membership],
            )
            .unwrap();
        }
        notify("!a:x", 10, "main");
        notify("!a:x", 12, "$root");
        notify("!b:x", 11, "main");
        notify("!left:x", 13, "main");
        assert_eq!(unread_rooms(&conn, "@bob:x").unwrap(), 2);

        receipt("!a:x", "main", 12);
        assert!(is_read(&conn, "@bob:x", "!a:x", 10).unwrap());
        assert!(
            !is_read(&conn, "@bob:x", "!a:x", 12).unwrap(),
            "a main-timeline receipt does not read a thread"
        );
        receipt("!a:x", "", 12);
        assert!(is_read(&conn, "@bob:x", "!a:x", 12).unwrap());
        assert!(!is_read(&conn, "@bob:x", "!b:x", 11).unwrap());
        assert_eq!(unread_rooms(&conn, "@bob:x").unwrap(), 1);
    }

    #[test]
    fn the_same_key_for_another_user_is_removed_and_devices_take_their_pushers_along() {
        let conn = migrated_in_memory();
        // The server's connections enforce foreign keys; this one must too.
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        add_device(&conn, "@alice:x", "PHONE");
        let alice = key("@alice:x", "shared");
        let bob = key("@bob:x", "shared");
        set(&conn, &alice, Some("PHONE"), "en");
        set(&conn, &bob, None, "en");

        delete_others_with_key_txn(&conn, &bob).unwrap();
        assert!(get_pusher(&conn, &alice).unwrap().is_none());
        assert!(get_pusher(&conn, &bob).unwrap().is_some());

        set(&conn, &alice, Some("PHONE"), "en");
        conn.execute(
            "DELETE FROM devices WHERE user_id = '@alice:x' AND device_id = 'PHONE'",
            [],
        )
        .unwrap();
        assert!(user_pushers(&conn, "@alice:x").unwrap().is_empty());
    }
}
