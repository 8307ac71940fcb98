//! Per-room and per-user views that do not replay history: current memberships (`room_memberships`)
//! and room aliases (`room_aliases`).

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::state::EventNid;

/// A user's current membership in a room and the member event that set it.
#[derive(Debug, Clone)]
pub struct MembershipRow {
    pub user_id: String,
    pub membership: String,
    pub event_nid: EventNid,
    pub forgotten: bool,
}

pub fn membership(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> Result<Option<MembershipRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id, membership, event_nid, forgotten FROM room_memberships
             WHERE room_id = ?1 AND user_id = ?2",
        )?
        .query_row(params![room_id, user_id], membership_row)
        .optional()?)
}

fn membership_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MembershipRow> {
    Ok(MembershipRow {
        user_id: r.get(0)?,
        membership: r.get(1)?,
        event_nid: r.get(2)?,
        forgotten: r.get(3)?,
    })
}

/// Current members of a room, optionally only those with one membership.
pub fn members(
    conn: &Connection,
    room_id: &str,
    membership: Option<&str>,
) -> Result<Vec<MembershipRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, membership, event_nid, forgotten FROM room_memberships
         WHERE room_id = ?1 AND (?2 IS NULL OR membership = ?2) ORDER BY user_id",
    )?;
    let rows = stmt.query_map(params![room_id, membership], membership_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every room in which the user has a membership, with it.
pub fn rooms_with_membership(conn: &Connection, user_id: &str) -> Result<Vec<RoomMembershipRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, membership, event_nid, forgotten FROM room_memberships WHERE user_id = ?1 ORDER BY room_id",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(RoomMembershipRow {
            room_id: r.get(0)?,
            membership: r.get(1)?,
            event_nid: r.get(2)?,
            forgotten: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A user's membership in one room, from the user's side.
#[derive(Debug, Clone)]
pub struct RoomMembershipRow {
    pub room_id: String,
    pub membership: String,
    pub event_nid: EventNid,
    pub forgotten: bool,
}

/// Rooms in which the user currently has `membership`.
pub fn rooms_of_user(conn: &Connection, user_id: &str, membership: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id FROM room_memberships WHERE user_id = ?1 AND membership = ?2 ORDER BY room_id",
    )?;
    let rows = stmt.query_map(params![user_id, membership], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn forget_room_txn(txn: &Connection, room_id: &str, user_id: &str) -> Result<()> {
    txn.execute(
        "UPDATE room_memberships SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2",
        params![room_id, user_id],
    )?;
    Ok(())
}

pub fn alias_room(conn: &Connection, alias: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT room_id, creator FROM room_aliases WHERE alias = ?1")?
        .query_row([alias], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Inserts an alias; false when it exists already.
pub fn insert_alias_txn(
    txn: &Connection,
    alias: &str,
    room_id: &str,
    creator: &str,
) -> Result<bool> {
    Ok(txn.execute(
        "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3) ON CONFLICT (alias) DO NOTHING",
        params![alias, room_id, creator],
    )? == 1)
}

pub fn delete_alias_txn(txn: &Connection, alias: &str) -> Result<bool> {
    Ok(txn.execute("DELETE FROM room_aliases WHERE alias = ?1", [alias])? == 1)
}

pub fn aliases_of_room(conn: &Connection, room_id: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias")?;
    let rows = stmt.query_map([room_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Points every alias of `from` at `to` (a room upgrade).
pub fn move_aliases_txn(txn: &Connection, from: &str, to: &str) -> Result<()> {
    txn.execute(
        "UPDATE room_aliases SET room_id = ?2 WHERE room_id = ?1",
        params![from, to],
    )?;
    Ok(())
}
