//! The public room directory and room summaries, read without replaying history: published rooms
//! in directory order (`rooms.published`, `rooms.joined_members`, kept by triggers on
//! `room_memberships`), and the current content of the state events a summary shows.

use rusqlite::{Connection, params};

use super::Result;

/// A position in the directory's order: rooms with more joined members first, then by room id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryKey {
    pub joined_members: i64,
    pub room_id: String,
}

/// Up to `limit` published rooms strictly after `after` in directory order (from the start when
/// `after` is `None`), or, with `backwards`, strictly before it, nearest first.
///
/// Each page is at most two range searches of the partial index `rooms_published_by_size`: the
/// rest of the rooms as large as `after`, then the smaller (or larger) ones. A single condition
/// with OR would make SQLite scan the index from the top, so a deep page (and many rooms share a
/// size) would cost its depth; this way it costs O(log n + limit).
pub fn published_rooms(
    conn: &Connection,
    after: Option<&DirectoryKey>,
    backwards: bool,
    limit: usize,
) -> Result<Vec<DirectoryKey>> {
    let Some(after) = after else {
        if backwards {
            return Ok(Vec::new());
        }
        return directory_query(
            conn,
            "SELECT joined_members, room_id FROM rooms WHERE published = 1
             ORDER BY joined_members DESC, room_id ASC LIMIT ?3",
            None,
            limit,
        );
    };
    let [same_size, next_sizes] = if backwards { BACKWARDS } else { FORWARDS };
    let mut rooms = directory_query(conn, same_size, Some(after), limit)?;
    if rooms.len() < limit {
        rooms.extend(directory_query(
            conn,
            next_sizes,
            Some(after),
            limit - rooms.len(),
        )?);
    }
    Ok(rooms)
}

/// The two searches of a page after a key: the rest of that size, then smaller rooms.
const FORWARDS: [&str; 2] = [
    "SELECT joined_members, room_id FROM rooms
     WHERE published = 1 AND joined_members = ?1 AND room_id > ?2
     ORDER BY joined_members DESC, room_id ASC LIMIT ?3",
    "SELECT joined_members, room_id FROM rooms
     WHERE published = 1 AND joined_members < ?1
     ORDER BY joined_members DESC, room_id ASC LIMIT ?3",
];

/// The two searches of a page before a key, nearest first: the rest of that size, then larger.
const BACKWARDS: [&str; 2] = [
    "SELECT joined_members, room_id FROM rooms
     WHERE published = 1 AND joined_members = ?1 AND room_id < ?2
     ORDER BY joined_members ASC, room_id DESC LIMIT ?3",
    "SELECT joined_members, room_id FROM rooms
     WHERE published = 1 AND joined_members > ?1
     ORDER BY joined_members ASC, room_id DESC LIMIT ?3",
];

fn directory_query(
    conn: &Connection,
    sql: &str,
    after: Option<&DirectoryKey>,
    limit: usize,
) -> Result<Vec<DirectoryKey>> {
    let (joined, room) = match after {
        Some(key) => (Some(key.joined_members), Some(key.room_id.as_str())),
        None => (None, None),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![joined, room, limit as i64], |r| {
        Ok(DirectoryKey {
            joined_members: r.get(0)?,
            room_id: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The number of rooms in the public room directory.
pub fn count_published_rooms(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM rooms WHERE published = 1")?
        .query_row([], |r| r.get(0))?)
}

/// How many users are currently joined to a room.
pub fn joined_member_count(conn: &Connection, room_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM room_memberships WHERE room_id = ?1 AND membership = 'join'",
        )?
        .query_row([room_id], |r| r.get(0))?)
}

/// The stored JSON of each current state event with an empty state key whose type is in `types`,
/// as (type, json) pairs: what a room summary is made of, in one indexed read per type.
pub fn current_state_json(
    conn: &Connection,
    room_id: &str,
    types: &[&str],
) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT cs.type, e.json FROM current_state cs
         JOIN events e ON e.stream_ordering = cs.event_nid
         WHERE cs.room_id = ?1 AND cs.type = ?2 AND cs.state_key = ''",
    )?;
    let mut found = Vec::new();
    for kind in types {
        let rows = stmt.query_map(params![room_id, kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            found.push(row?);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        crate::storage::migrated_in_memory()
    }

    fn room(conn: &Connection, id: &str, published: bool, members: usize) {
        super::super::events::insert_room_txn(conn, id, "11", "@a:x", 0).unwrap();
        super::super::events::set_room_published_txn(conn, id, published).unwrap();
        for i in 0..members {
            super::super::state::set_current_state_txn(
                conn,
                id,
                "m.room.member",
                &format!("@u{i}:x"),
                i as i64,
                Some("join"),
            )
            .unwrap();
        }
    }

    fn ids(keys: &[DirectoryKey]) -> Vec<&str> {
        keys.iter().map(|k| k.room_id.as_str()).collect()
    }

    #[test]
    fn joined_members_follow_membership_changes() {
        let conn = db();
        room(&conn, "!a:x", true, 3);
        let count = |c: &Connection| {
            c.query_row(
                "SELECT joined_members FROM rooms WHERE room_id = '!a:x'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        };
        assert_eq!(count(&conn), 3);
        let set = |user: &str, membership: &str| {
            super::super::state::set_current_state_txn(
                &conn,
                "!a:x",
                "m.room.member",
                user,
                99,
                Some(membership),
            )
            .unwrap()
        };
        set("@u0:x", "leave");
        assert_eq!(count(&conn), 2);
        set("@u0:x", "leave");
        assert_eq!(count(&conn), 2, "a repeated leave changes nothing");
        set("@u1:x", "join");
        assert_eq!(
            count(&conn),
            2,
            "a profile change of a member changes nothing"
        );
        set("@new:x", "invite");
        assert_eq!(count(&conn), 2);
        set("@new:x", "join");
        assert_eq!(count(&conn), 3);
        assert_eq!(joined_member_count(&conn, "!a:x").unwrap(), 3);
    }

    #[test]
    fn pages_walk_the_directory_both_ways_without_overlap() {
        let conn = db();
        room(&conn, "!big:x", true, 5);
        room(&conn, "!mid1:x", true, 2);
        room(&conn, "!mid2:x", true, 2);
        room(&conn, "!hidden:x", false, 9);
        room(&conn, "!small:x", true, 1);
        let first = published_rooms(&conn, None, false, 2).unwrap();
        assert_eq!(ids(&first), ["!big:x", "!mid1:x"]);
        let second = published_rooms(&conn, first.last(), false, 2).unwrap();
        assert_eq!(ids(&second), ["!mid2:x", "!small:x"]);
        let before = published_rooms(&conn, second.first(), true, 5).unwrap();
        assert_eq!(ids(&before), ["!mid1:x", "!big:x"]);
        assert!(published_rooms(&conn, None, true, 5).unwrap().is_empty());
        assert_eq!(count_published_rooms(&conn).unwrap(), 4);
    }

    #[test]
    fn pages_after_a_key_search_the_index_instead_of_scanning_it() {
        let conn = db();
        for sql in FORWARDS.iter().chain(&BACKWARDS) {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(params![1, "!a:x", 10], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(
                plan.starts_with("SEARCH rooms USING")
                    && plan.contains("INDEX rooms_published_by_size")
                    && !plan.contains("TEMP B-TREE"),
                "{sql}\n{plan}"
            );
        }
    }

    #[test]
    fn many_rooms_of_one_size_page_in_order() {
        let conn = db();
        for i in 0..250 {
            room(&conn, &format!("!r{i:03}:x"), true, 1);
        }
        let mut seen = Vec::new();
        let mut after: Option<DirectoryKey> = None;
        loop {
            let page = published_rooms(&conn, after.as_ref(), false, 40).unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            seen.extend(page.into_iter().map(|k| k.room_id));
        }
        let expected: Vec<String> = (0..250).map(|i| format!("!r{i:03}:x")).collect();
        assert_eq!(seen, expected);
    }
}
