//! Tables `device_inbox` (to-device messages waiting for their device, in the to-device stream's
//! order), `to_device_txns` (transaction ids of sends already carried out) and
//! `received_to_device` (message ids of `m.direct_to_device` EDUs already delivered).

use rusqlite::{Connection, params};
use serde_json::Value as JsonValue;

use super::Result;

/// How long a sending device's transaction id is remembered. Clients retry a request within
/// minutes; a day leaves ample room.
const TXN_KEPT_MS: i64 = 24 * 60 * 60 * 1000;
/// How long the message id of a received EDU is remembered. Other servers retry a transaction
/// for at most a day or so; a week leaves ample room.
const RECEIVED_KEPT_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// One message for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage {
    pub stream_id: i64,
    pub sender: String,
    pub event_type: String,
    pub content: JsonValue,
}

/// Records that `device` of `user` carried out the send `txn_id`; false when it did already (the
/// send is a retry and must deliver nothing). Also forgets the device's transaction ids older than
/// `TXN_KEPT_MS`.
pub fn record_txn_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
    now_ms: i64,
) -> Result<bool> {
    txn.prepare_cached(
        "DELETE FROM to_device_txns WHERE user_id = ?1 AND device_id = ?2 AND created_ts < ?3",
    )?
    .execute(params![user_id, device_id, now_ms - TXN_KEPT_MS])?;
    let inserted = txn
        .prepare_cached(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![user_id, device_id, txn_id, now_ms])?;
    Ok(inserted == 1)
}

/// Records that the EDU `message_id` of `origin` was received; false when it was already (a
/// retried transaction). Also forgets message ids older than `RECEIVED_KEPT_MS`.
pub fn record_received_txn(
    txn: &Connection,
    origin: &str,
    message_id: &str,
    now_ms: i64,
) -> Result<bool> {
    txn.prepare_cached("DELETE FROM received_to_device WHERE received_ts < ?1")?
        .execute(params![now_ms - RECEIVED_KEPT_MS])?;
    let inserted = txn
        .prepare_cached(
            "INSERT INTO received_to_device (origin, message_id, received_ts)
             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![origin, message_id, now_ms])?;
    Ok(inserted == 1)
}

/// The devices of `user_id` a message addressed to `device` reaches: all of them for `None` (the
/// `*` of the specification), else that device if it exists.
pub fn target_devices(
    conn: &Connection,
    user_id: &str,
    device: Option<&str>,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id FROM devices WHERE user_id = ?1 AND (?2 IS NULL OR device_id = ?2)
         ORDER BY device_id",
    )?;
    let rows = stmt.query_map(params![user_id, device], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Puts a message into a device's inbox and returns its position in the to-device stream.
/// Positions are assigned inside the write transaction on the one writer thread, so they are
/// committed in order.
pub fn insert_message_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    sender: &str,
    event_type: &str,
    content: &str,
) -> Result<i64> {
    txn.prepare_cached(
        "INSERT INTO device_inbox (user_id, device_id, sender, event_type, content)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user_id, device_id, sender, event_type, content])?;
    Ok(txn.last_insert_rowid())
}

/// The messages of a device after position `since`, in order, at most `limit`.
pub fn messages_after(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    since: i64,
    limit: usize,
) -> Result<Vec<InboxMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stream_id, sender, event_type, content FROM device_inbox
         WHERE user_id = ?1 AND device_id = ?2 AND stream_id > ?3
         ORDER BY stream_id LIMIT ?4",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![user_id, device_id, since, limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (stream_id, sender, event_type, content) = row?;
        Ok(InboxMessage {
            stream_id,
            sender,
            event_type,
            content: serde_json::from_str(&content)?,
        })
    })
    .collect()
}

/// Whether the device has messages at or before `upto`: ones its sync token acknowledges and
/// that are still to be deleted.
pub fn has_messages_upto(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    upto: i64,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM device_inbox
                            WHERE user_id = ?1 AND device_id = ?2 AND stream_id <= ?3)",
        )?
        .query_row(params![user_id, device_id, upto], |row| row.get(0))?)
}

/// Deletes the messages of a device up to position `upto` (those it acknowledged); returns how
/// many.
pub fn delete_messages_upto_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    upto: i64,
) -> Result<usize> {
    Ok(txn
        .prepare_cached(
            "DELETE FROM device_inbox WHERE user_id = ?1 AND device_id = ?2 AND stream_id <= ?3",
        )?
        .execute(params![user_id, device_id, upto])?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::migrated_in_memory;

    fn add_device(conn: &Connection, user: &str, device: &str) {
        conn.execute(
            "INSERT OR IGNORE INTO users (user_id, created_ts) VALUES (?1, 0)",
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
    fn messages_come_in_order_from_a_position_and_go_when_acknowledged() {
        let conn = migrated_in_memory();
        add_device(&conn, "@bob:x", "PHONE");
        add_device(&conn, "@bob:x", "LAPTOP");
        let put = |device: &str, n: i64| {
            let content = json!({"n": n}).to_string();
            insert_message_txn(&conn, "@bob:x", device, "@alice:x", "m.test", &content).unwrap()
        };
        let first = put("PHONE", 1);
        let other = put("LAPTOP", 2);
        let second = put("PHONE", 3);
        assert!(first < other && other < second);

        let all = messages_after(&conn, "@bob:x", "PHONE", 0, 10).unwrap();
        assert_eq!(
            all.iter().map(|m| m.stream_id).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(all[1].content, json!({"n": 3}));
        assert_eq!(
            messages_after(&conn, "@bob:x", "PHONE", 0, 1)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            messages_after(&conn, "@bob:x", "PHONE", first, 10)
                .unwrap()
                .len(),
            1
        );

        assert!(has_messages_upto(&conn, "@bob:x", "PHONE", first).unwrap());
        assert_eq!(
            delete_messages_upto_txn(&conn, "@bob:x", "PHONE", first).unwrap(),
            1
        );
        assert!(!has_messages_upto(&conn, "@bob:x", "PHONE", first).unwrap());
        assert_eq!(
            messages_after(&conn, "@bob:x", "PHONE", 0, 10)
                .unwrap()
                .len(),
            1
        );

        // Deleting every row does not make positions go back.
        delete_messages_upto_txn(&conn, "@bob:x", "PHONE", i64::MAX).unwrap();
        delete_messages_upto_txn(&conn, "@bob:x", "LAPTOP", i64::MAX).unwrap();
        assert!(put("PHONE", 4) > second);

        // A deleted device takes its messages with it.
        conn.execute("DELETE FROM devices WHERE device_id = 'PHONE'", [])
            .unwrap();
        assert!(
            messages_after(&conn, "@bob:x", "PHONE", 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn devices_are_targeted_one_or_all_and_txn_ids_and_message_ids_count_once() {
        let conn = migrated_in_memory();
        add_device(&conn, "@bob:x", "PHONE");
        add_device(&conn, "@bob:x", "LAPTOP");
        assert_eq!(
            target_devices(&conn, "@bob:x", None).unwrap(),
            ["LAPTOP", "PHONE"]
        );
        assert_eq!(
            target_devices(&conn, "@bob:x", Some("PHONE")).unwrap(),
            ["PHONE"]
        );
        assert!(
            target_devices(&conn, "@bob:x", Some("NOPE"))
                .unwrap()
                .is_empty()
        );
        assert!(target_devices(&conn, "@carol:x", None).unwrap().is_empty());

        assert!(record_txn_txn(&conn, "@bob:x", "PHONE", "t1", 1_000).unwrap());
        assert!(!record_txn_txn(&conn, "@bob:x", "PHONE", "t1", 2_000).unwrap());
        assert!(record_txn_txn(&conn, "@bob:x", "LAPTOP", "t1", 2_000).unwrap());
        // A day later the id is forgotten.
        assert!(record_txn_txn(&conn, "@bob:x", "PHONE", "t1", 1_001 + TXN_KEPT_MS).unwrap());

        assert!(record_received_txn(&conn, "hs2", "m1", 1_000).unwrap());
        assert!(!record_received_txn(&conn, "hs2", "m1", 2_000).unwrap());
        assert!(record_received_txn(&conn, "hs3", "m1", 2_000).unwrap());
    }
}
