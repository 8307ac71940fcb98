//! Table `account_data`: global and per-room account data of users (room tags included, as
//! `m.tag`), each row carrying the position in the account-data stream of its latest change.

use ruma::{RoomId, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as JsonValue;

use super::Result;

/// The `room_id` column of global account data. An empty string rather than NULL, so the primary
/// key keeps one row per (user, type) for global data too.
const GLOBAL: &str = "";

/// One piece of account data as it changed: `room_id` is `None` for global data.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountDataRow {
    pub room_id: Option<String>,
    pub data_type: String,
    pub content: JsonValue,
    pub stream_id: i64,
}

/// Sets one piece of account data, replacing what was there, and returns the stream position it
/// took. Positions are taken inside the write transaction, on the one writer thread, so they are
/// committed in order and "the largest committed position" is always a complete prefix.
pub fn set_account_data_txn(
    txn: &Connection,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
    content: &JsonValue,
) -> Result<i64> {
    let stream_id = max_stream_id(txn)? + 1;
    txn.prepare_cached(
        "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id, room_id, data_type)
         DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
    )?
    .execute(params![
        user_id.as_str(),
        room_id.map_or(GLOBAL, RoomId::as_str),
        data_type,
        content.to_string(),
        stream_id
    ])?;
    Ok(stream_id)
}

/// The content of one piece of account data. Also used inside write closures that change a
/// piece from its current value (room tags), so the read and the write see the same row.
pub fn get_account_data(
    conn: &Connection,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
) -> Result<Option<JsonValue>> {
    let content: Option<String> = conn
        .prepare_cached(
            "SELECT content FROM account_data
             WHERE user_id = ?1 AND room_id = ?2 AND data_type = ?3",
        )?
        .query_row(
            params![
                user_id.as_str(),
                room_id.map_or(GLOBAL, RoomId::as_str),
                data_type
            ],
            |row| row.get(0),
        )
        .optional()?;
    Ok(content.map(|c| serde_json::from_str(&c)).transpose()?)
}

/// Every piece of account data of `user_id` whose latest change lies in `(since, upto]`, in
/// stream order.
pub fn get_account_data_between(
    conn: &Connection,
    user_id: &UserId,
    since: i64,
    upto: i64,
) -> Result<Vec<AccountDataRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, data_type, content, stream_id FROM account_data
         WHERE user_id = ?1 AND stream_id > ?2 AND stream_id <= ?3
         ORDER BY stream_id",
    )?;
    let rows = stmt.query_map(params![user_id.as_str(), since, upto], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (room_id, data_type, content, stream_id) = row?;
        Ok(AccountDataRow {
            room_id: (room_id != GLOBAL).then_some(room_id),
            data_type,
            content: serde_json::from_str(&content)?,
            stream_id,
        })
    })
    .collect()
}

/// The position of the latest committed account-data change of any user (0 before the first).
pub fn max_stream_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(stream_id), 0) FROM account_data")?
        .query_row([], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::{migrated_in_memory, users};

    #[test]
    fn every_change_takes_the_next_position_and_replaces_the_content() {
        let conn = migrated_in_memory();
        let alice: &UserId = "@alice:x".try_into().unwrap();
        let bob: &UserId = "@bob:x".try_into().unwrap();
        let room_id: ruma::OwnedRoomId = "!room:x".try_into().unwrap();
        let room: &RoomId = &room_id;
        users::insert_user_txn(&conn, alice, None, false).unwrap();
        users::insert_user_txn(&conn, bob, None, false).unwrap();
        assert_eq!(max_stream_id(&conn).unwrap(), 0);

        let a = json!({"a": 1});
        assert_eq!(
            set_account_data_txn(&conn, alice, None, "m.direct", &a).unwrap(),
            1
        );
        assert_eq!(
            set_account_data_txn(&conn, bob, None, "m.direct", &a).unwrap(),
            2
        );
        let tags = json!({"tags": {}});
        assert_eq!(
            set_account_data_txn(&conn, alice, Some(room), "m.tag", &tags).unwrap(),
            3
        );
        let b = json!({"b": 2});
        assert_eq!(
            set_account_data_txn(&conn, alice, None, "m.direct", &b).unwrap(),
            4
        );

        assert_eq!(
            get_account_data(&conn, alice, None, "m.direct").unwrap(),
            Some(b.clone())
        );
        assert_eq!(
            get_account_data(&conn, alice, Some(room), "m.direct").unwrap(),
            None
        );
        assert_eq!(
            get_account_data(&conn, alice, Some(room), "m.tag").unwrap(),
            Some(tags.clone())
        );

        let changed = get_account_data_between(&conn, alice, 0, 4).unwrap();
        assert_eq!(
            changed,
            vec![
                AccountDataRow {
                    room_id: Some("!room:x".into()),
                    data_type: "m.tag".into(),
                    content: tags,
                    stream_id: 3
                },
                AccountDataRow {
                    room_id: None,
                    data_type: "m.direct".into(),
                    content: b,
                    stream_id: 4
                },
            ]
        );
        assert!(
            get_account_data_between(&conn, alice, 4, 4)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            get_account_data_between(&conn, alice, 0, 3).unwrap().len(),
            1
        );
    }
}
