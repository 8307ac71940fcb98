//! Table `presence`: the presence each user last set (state, status message, activity times), so
//! it survives a restart; and the membership questions presence asks ("who shares a room with
//! this user"), answered from `room_memberships`.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// The stored presence of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRow {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
    pub last_seen_ts: i64,
}

pub fn set_presence_txn(txn: &Connection, row: &PresenceRow) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO presence (user_id, state, status_msg, last_active_ts, last_seen_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,
             status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,
             last_seen_ts = excluded.last_seen_ts",
    )?
    .execute(params![
        row.user_id,
        row.state,
        row.status_msg,
        row.last_active_ts,
        row.last_seen_ts
    ])?;
    Ok(())
}

/// Every stored presence, read once when the server first needs presence.
pub fn all_presence(conn: &Connection) -> Result<Vec<PresenceRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, state, status_msg, last_active_ts, last_seen_ts FROM presence",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(PresenceRow {
            user_id: row.get(0)?,
            state: row.get(1)?,
            status_msg: row.get(2)?,
            last_active_ts: row.get(3)?,
            last_seen_ts: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The users joined to at least one room `user_id` is joined to (`user_id` included when it is
/// joined anywhere).
pub fn users_sharing_a_room(conn: &Connection, user_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT other.user_id
         FROM room_memberships mine
         JOIN room_memberships other ON other.room_id = mine.room_id
         WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'",
    )?;
    let rows = stmt.query_map([user_id], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether two users are joined to a common room.
pub fn share_a_room(conn: &Connection, user_id: &str, other: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM room_memberships mine
             JOIN room_memberships other ON other.room_id = mine.room_id
             WHERE mine.user_id = ?1 AND mine.membership = 'join'
               AND other.user_id = ?2 AND other.membership = 'join'
             LIMIT 1",
        )?
        .query_row(params![user_id, other], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{migrated_in_memory, users};

    #[test]
    fn presence_is_replaced_and_room_sharing_follows_joined_memberships() {
        let conn = migrated_in_memory();
        let alice: &ruma::UserId = "@alice:x".try_into().unwrap();
        users::insert_user_txn(&conn, alice, None, false).unwrap();
        let mut row = PresenceRow {
            user_id: "@alice:x".into(),
            state: "online".into(),
            status_msg: Some("on ward 3".into()),
            last_active_ts: 10,
            last_seen_ts: 10,
        };
        set_presence_txn(&conn, &row).unwrap();
        row.state = "unavailable".into();
        row.status_msg = None;
        set_presence_txn(&conn, &row).unwrap();
        assert_eq!(all_presence(&conn).unwrap(), [row]);

        conn.execute_batch(
            "INSERT INTO room_memberships (room_id, user_id, membership, event_nid) VALUES
                ('!a:x', '@alice:x', 'join', 1), ('!a:x', '@bob:x', 'join', 2),
                ('!a:x', '@carol:x', 'invite', 3), ('!b:x', '@dave:x', 'join', 4),
                ('!b:x', '@alice:x', 'leave', 5);",
        )
        .unwrap();
        let mut sharing = users_sharing_a_room(&conn, "@alice:x").unwrap();
        sharing.sort();
        assert_eq!(sharing, ["@alice:x", "@bob:x"]);
        assert!(share_a_room(&conn, "@alice:x", "@bob:x").unwrap());
        assert!(!share_a_room(&conn, "@alice:x", "@carol:x").unwrap());
        assert!(!share_a_room(&conn, "@alice:x", "@dave:x").unwrap());
    }
}
