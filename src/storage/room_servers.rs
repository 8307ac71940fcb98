//! Servers in rooms, read from memberships (`room_memberships`, and `m.room.member` events for
//! history): which servers have joined members now (the resident servers), and what one server's
//! users' memberships have been. A user's server is everything after the first `:` of the user
//! id, since a localpart never contains one.

use rusqlite::{Connection, params};

use super::Result;
use super::state::KeyNid;

/// The server part of a user id column, in SQL.
const SERVER_OF_USER: &str = "substr(user_id, instr(user_id, ':') + 1)";
const SERVER_OF_MEMBER: &str = "substr(e.state_key, instr(e.state_key, ':') + 1)";

/// The servers with at least one joined member in the room, in name order.
pub fn joined_servers(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT {SERVER_OF_USER} AS server FROM room_memberships
         WHERE room_id = ?1 AND membership = 'join' ORDER BY server"
    ))?;
    let rows = stmt.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The servers with a joined member in any room `user_id` is joined to (the user's own
/// included), in name order.
pub fn servers_sharing_a_room(conn: &Connection, user_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT substr(other.user_id, instr(other.user_id, ':') + 1) AS server
         FROM room_memberships mine
         JOIN room_memberships other ON other.room_id = mine.room_id
         WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'
         ORDER BY server",
    )?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether `server` has a joined member in the room now.
pub fn server_is_joined(conn: &Connection, room_id: &str, server: &str) -> Result<bool> {
    server_has_member(conn, room_id, server, "join")
}

/// Whether `server` has a member with `membership` (`join`, `invite`, …) in the room now.
pub fn server_has_member(
    conn: &Connection,
    room_id: &str,
    server: &str,
    membership: &str,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM room_memberships
               WHERE room_id = ?1 AND membership = ?3 AND {SERVER_OF_USER} = ?2)"
        ))?
        .query_row(params![room_id, server, membership], |r| r.get(0))?)
}

/// The interned `m.room.member` state keys of every user of `server` who ever had a membership
/// event in the room, to look their membership up in the state at any event.
pub fn server_member_keys(conn: &Connection, room_id: &str, server: &str) -> Result<Vec<KeyNid>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT k.key_nid FROM events e
         JOIN state_keys k ON k.type = 'm.room.member' AND k.state_key = e.state_key
         WHERE e.room_id = ?1 AND e.type = 'm.room.member' AND {SERVER_OF_MEMBER} = ?2
         ORDER BY k.key_nid"
    ))?;
    let rows = stmt.query_map(params![room_id, server], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stream positions of the joins of `server`'s users in the room, oldest first.
pub fn server_join_positions(conn: &Connection, room_id: &str, server: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.stream_ordering FROM events e
         WHERE e.room_id = ?1 AND e.type = 'm.room.member' AND e.membership = 'join'
           AND e.rejected_reason IS NULL AND {SERVER_OF_MEMBER} = ?2
         ORDER BY e.stream_ordering"
    ))?;
    let rows = stmt.query_map(params![room_id, server], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_read_from_user_ids() {
        let conn = crate::storage::migrated_in_memory();
        for (user, membership) in [
            ("@a:hs1.test", "join"),
            ("@b:hs1.test", "join"),
            ("@c:hs2.test:8448", "join"),
            ("@d:hs3.test", "leave"),
            ("@e:x.hs1.test", "invite"),
        ] {
            conn.execute(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_nid)
                 VALUES ('!r:x', ?1, ?2, 1)",
                params![user, membership],
            )
            .unwrap();
        }
        assert_eq!(
            joined_servers(&conn, "!r:x").unwrap(),
            ["hs1.test", "hs2.test:8448"]
        );
        let joined = |server| server_has_member(&conn, "!r:x", server, "join").unwrap();
        assert!(joined("hs1.test"));
        assert!(joined("hs2.test:8448"));
        assert!(!joined("hs2.test"));
        assert!(!joined("hs3.test"));
        assert!(!joined("x.hs1.test"));
        assert!(server_has_member(&conn, "!r:x", "x.hs1.test", "invite").unwrap());
    }
}
