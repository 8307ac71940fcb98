//! Room state as state groups that share structure (tables `state_keys`, `state_groups`,
//! `state_group_changes`, `state_group_deltas`), and the current state of each room
//! (`current_state`, `room_memberships`).
//!
//! A group derives from a parent with a few changes. Besides its own changes it holds a delta
//! against a *base* ancestor: the one at the depth with the lowest set bit of its own depth
//! cleared (skip deltas). Reading one key walks at most log2(depth) groups; building a group reads
//! fewer than lowbit(depth) ancestors' changes; groups at power-of-two depths store the full state,
//! which adds at most twice the state's size over a room's life. No group ever copies the whole
//! state for each event.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// A numeric id of an interned (type, state_key) pair.
pub type KeyNid = i64;
/// A numeric id of an event: its stream ordering.
pub type EventNid = i64;

/// A state as numeric ids: key → event.
pub type NidState = HashMap<KeyNid, EventNid>;

struct GroupMeta {
    parent: Option<i64>,
    base: Option<i64>,
    depth: i64,
}

/// The numeric id of a (type, state_key) pair, interning it if new.
pub fn intern_key_txn(txn: &Connection, kind: &str, state_key: &str) -> Result<KeyNid> {
    if let Some(nid) = key_nid(txn, kind, state_key)? {
        return Ok(nid);
    }
    txn.execute(
        "INSERT INTO state_keys (type, state_key) VALUES (?1, ?2)",
        params![kind, state_key],
    )?;
    Ok(txn.last_insert_rowid())
}

pub fn key_nid(conn: &Connection, kind: &str, state_key: &str) -> Result<Option<KeyNid>> {
    Ok(conn
        .prepare_cached("SELECT key_nid FROM state_keys WHERE type = ?1 AND state_key = ?2")?
        .query_row(params![kind, state_key], |r| r.get(0))
        .optional()?)
}

/// The (type, state_key) pair of a key id.
pub fn key_of(conn: &Connection, nid: KeyNid) -> Result<(String, String)> {
    Ok(conn
        .prepare_cached("SELECT type, state_key FROM state_keys WHERE key_nid = ?1")?
        .query_row([nid], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

fn group_meta(conn: &Connection, group: i64) -> Result<GroupMeta> {
    Ok(conn
        .prepare_cached("SELECT parent, base, depth FROM state_groups WHERE group_id = ?1")?
        .query_row([group], |r| {
            Ok(GroupMeta {
                parent: r.get(0)?,
                base: r.get(1)?,
                depth: r.get(2)?,
            })
        })?)
}

/// Whether a group's delta against its base lives in its own changes (base = parent).
fn delta_is_changes(meta: &GroupMeta) -> bool {
    meta.parent.is_some() && meta.base == meta.parent
}

fn rows(conn: &Connection, table: &str, group: i64) -> Result<Vec<(KeyNid, Option<EventNid>)>> {
    let sql = format!("SELECT key_nid, event_nid FROM {table} WHERE group_id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([group], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Creates a group deriving from `parent` (None: a room's first state) with `changes`.
pub fn create_group_txn(
    txn: &Connection,
    room_id: &str,
    parent: Option<i64>,
    changes: &[(KeyNid, Option<EventNid>)],
) -> Result<i64> {
    let depth = match parent {
        Some(p) => group_meta(txn, p)?.depth + 1,
        None => 1,
    };
    let base_depth = depth & (depth - 1);
    // Changes between the base and the parent, newest first wins, then this group's own.
    let mut delta: HashMap<KeyNid, Option<EventNid>> = HashMap::new();
    let mut base = None;
    if base_depth == 0 {
        if let Some(p) = parent {
            for (key, event) in load_state(txn, p)? {
                delta.insert(key, Some(event));
            }
        }
    } else {
        let mut cursor = parent;
        while let Some(group) = cursor {
            let meta = group_meta(txn, group)?;
            if meta.depth == base_depth {
                base = Some(group);
                break;
            }
            for (key, event) in rows(txn, "state_group_changes", group)? {
                delta.entry(key).or_insert(event);
            }
            cursor = meta.parent;
        }
    }
    for (key, event) in changes {
        delta.insert(*key, *event);
    }
    if base_depth == 0 {
        delta.retain(|_, event| event.is_some());
    }
    txn.execute(
        "INSERT INTO state_groups (room_id, parent, base, depth) VALUES (?1, ?2, ?3, ?4)",
        params![room_id, parent, base, depth],
    )?;
    let group = txn.last_insert_rowid();
    let mut insert_change = txn.prepare_cached(
        "INSERT INTO state_group_changes (group_id, key_nid, event_nid) VALUES (?1, ?2, ?3)",
    )?;
    for (key, event) in changes {
        insert_change.execute(params![group, key, event])?;
    }
    if !(parent.is_some() && base == parent) {
        let mut insert_delta = txn.prepare_cached(
            "INSERT INTO state_group_deltas (group_id, key_nid, event_nid) VALUES (?1, ?2, ?3)",
        )?;
        for (key, event) in &delta {
            insert_delta.execute(params![group, key, event])?;
        }
    }
    Ok(group)
}

/// The event holding `key` in a group's state, if any.
pub fn lookup(conn: &Connection, group: i64, key: KeyNid) -> Result<Option<EventNid>> {
    let mut cursor = Some(group);
    while let Some(g) = cursor {
        let meta = group_meta(conn, g)?;
        let table = if delta_is_changes(&meta) {
            "state_group_changes"
        } else {
            "state_group_deltas"
        };
        let sql = format!("SELECT event_nid FROM {table} WHERE group_id = ?1 AND key_nid = ?2");
        let found: Option<Option<EventNid>> = conn
            .prepare_cached(&sql)?
            .query_row(params![g, key], |r| r.get(0))
            .optional()?;
        if let Some(event) = found {
            return Ok(event);
        }
        cursor = meta.base;
    }
    Ok(None)
}

/// The whole state of a group.
pub fn load_state(conn: &Connection, group: i64) -> Result<NidState> {
    let mut chain = Vec::new();
    let mut cursor = Some(group);
    while let Some(g) = cursor {
        let meta = group_meta(conn, g)?;
        cursor = meta.base;
        chain.push((g, meta));
    }
    let mut state = NidState::new();
    for (g, meta) in chain.iter().rev() {
        let table = if delta_is_changes(meta) {
            "state_group_changes"
        } else {
            "state_group_deltas"
        };
        for (key, event) in rows(conn, table, *g)? {
            match event {
                Some(event) => state.insert(key, event),
                None => state.remove(&key),
            };
        }
    }
    Ok(state)
}

/// Sets one entry of a room's current state, keeping `room_memberships` in step for members.
pub fn set_current_state_txn(
    txn: &Connection,
    room_id: &str,
    kind: &str,
    state_key: &str,
    event_nid: EventNid,
    membership: Option<&str>,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO current_state (room_id, type, state_key, event_nid) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_nid = excluded.event_nid",
    )?
    .execute(params![room_id, kind, state_key, event_nid])?;
    if let Some(membership) = membership {
        txn.prepare_cached(
            "INSERT INTO room_memberships (room_id, user_id, membership, event_nid) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                 event_nid = excluded.event_nid,
                 forgotten = CASE WHEN excluded.membership IN ('join', 'invite', 'knock')
                                  THEN 0 ELSE room_memberships.forgotten END",
        )?
        .execute(params![room_id, state_key, membership, event_nid])?;
    }
    Ok(())
}

/// The event currently holding (type, state_key) in a room.
pub fn current_state_event(
    conn: &Connection,
    room_id: &str,
    kind: &str,
    state_key: &str,
) -> Result<Option<EventNid>> {
    Ok(conn
        .prepare_cached(
            "SELECT event_nid FROM current_state WHERE room_id = ?1 AND type = ?2 AND state_key = ?3",
        )?
        .query_row(params![room_id, kind, state_key], |r| r.get(0))
        .optional()?)
}

/// Every current state event of a room.
pub fn current_state(conn: &Connection, room_id: &str) -> Result<Vec<EventNid>> {
    let mut stmt = conn.prepare_cached("SELECT event_nid FROM current_state WHERE room_id = ?1")?;
    let rows = stmt.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The current state events of one type in a room (every state key).
pub fn current_state_of_type(
    conn: &Connection,
    room_id: &str,
    kind: &str,
) -> Result<Vec<EventNid>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_nid FROM current_state WHERE room_id = ?1 AND type = ?2 ORDER BY state_key",
    )?;
    let rows = stmt.query_map(params![room_id, kind], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The (type, state_key) of each of `keys`.
pub fn keys_of(conn: &Connection, keys: &[KeyNid]) -> Result<HashMap<KeyNid, (String, String)>> {
    let mut found = HashMap::with_capacity(keys.len());
    // Bounded batches keep each statement under SQLite's parameter limit.
    for batch in keys.chunks(500) {
        let marks = (1..=batch.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql =
            format!("SELECT key_nid, type, state_key FROM state_keys WHERE key_nid IN ({marks})");
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(batch.iter()), |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
        })?;
        for row in rows {
            let (nid, key) = row?;
            found.insert(nid, key);
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

    #[test]
    fn a_long_history_reads_back_every_state_and_key() {
        let conn = db();
        // 1,000 groups, each changing one of 50 keys; remember the expected state of each.
        let mut expected: Vec<NidState> = Vec::new();
        let mut groups = Vec::new();
        let mut current = NidState::new();
        let mut parent = None;
        for i in 0..1000i64 {
            let key = i % 50;
            current.insert(key, i);
            let group = create_group_txn(&conn, "!r:x", parent, &[(key, Some(i))]).unwrap();
            groups.push(group);
            expected.push(current.clone());
            parent = Some(group);
        }
        for (i, group) in groups.iter().enumerate().step_by(37) {
            assert_eq!(
                load_state(&conn, *group).unwrap(),
                expected[i],
                "state of group {i}"
            );
            for key in [0, 17, 49] {
                assert_eq!(
                    lookup(&conn, *group, key).unwrap(),
                    expected[i].get(&key).copied()
                );
            }
        }
    }

    #[test]
    fn forks_keep_their_own_states_and_removals_apply() {
        let conn = db();
        let root = create_group_txn(&conn, "!r:x", None, &[(1, Some(10)), (2, Some(20))]).unwrap();
        let left = create_group_txn(&conn, "!r:x", Some(root), &[(1, Some(11))]).unwrap();
        let right =
            create_group_txn(&conn, "!r:x", Some(root), &[(2, None), (3, Some(30))]).unwrap();
        let left2 = create_group_txn(&conn, "!r:x", Some(left), &[(3, Some(31))]).unwrap();
        assert_eq!(
            load_state(&conn, left2).unwrap(),
            NidState::from([(1, 11), (2, 20), (3, 31)])
        );
        assert_eq!(
            load_state(&conn, right).unwrap(),
            NidState::from([(1, 10), (3, 30)])
        );
        assert_eq!(lookup(&conn, right, 2).unwrap(), None);
        assert_eq!(lookup(&conn, left2, 2).unwrap(), Some(20));
    }

    #[test]
    fn ten_thousand_joins_store_compactly() {
        let conn = db();
        let mut parent = None;
        for i in 0..10_000i64 {
            parent = Some(create_group_txn(&conn, "!r:x", parent, &[(i, Some(i))]).unwrap());
        }
        let rows: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM state_group_changes) + (SELECT COUNT(*) FROM state_group_deltas)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        // A full copy per event would be 50 million rows; skip deltas keep it near n log n / 2.
        assert!(rows < 120_000, "{rows} state rows for 10,000 joins");
        assert_eq!(load_state(&conn, parent.unwrap()).unwrap().len(), 10_000);
    }
}
