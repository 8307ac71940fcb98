//! Tables `rooms`, `events`, `forward_extremities` and `event_relations`: the room DAG and its
//! local stream positions. (An event's edges are in its JSON: see `dag`.)

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::state::EventNid;

/// An event row as read back: enough to rebuild the PDU and place it in the stream.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub nid: EventNid,
    pub event_id: String,
    pub room_id: String,
    pub json: String,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub redacted_by: Option<String>,
}

/// What is stored for a new event.
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub membership: Option<&'a str>,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// The federation form; `prev_events` and `auth_events` are read back from it (`dag`).
    pub json: &'a str,
    /// The event's `prev_events` (also in `json`), which stop being forward extremities.
    pub prev_events: &'a [String],
    pub state_before: Option<i64>,
    /// (device, txn id) of a client send.
    pub txn: Option<(&'a str, &'a str)>,
}

#[derive(Debug, Clone)]
pub struct RoomRow {
    pub room_version: String,
    pub creator: String,
    pub published: bool,
}

pub fn insert_room_txn(
    txn: &Connection,
    room_id: &str,
    version: &str,
    creator: &str,
    now: i64,
) -> Result<()> {
    txn.execute(
        "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES (?1, ?2, ?3, ?4)",
        params![room_id, version, creator, now],
    )?;
    Ok(())
}

pub fn get_room(conn: &Connection, room_id: &str) -> Result<Option<RoomRow>> {
    Ok(conn
        .prepare_cached("SELECT room_version, creator, published FROM rooms WHERE room_id = ?1")?
        .query_row([room_id], |r| {
            Ok(RoomRow {
                room_version: r.get(0)?,
                creator: r.get(1)?,
                published: r.get(2)?,
            })
        })
        .optional()?)
}

pub fn set_room_published_txn(txn: &Connection, room_id: &str, published: bool) -> Result<()> {
    txn.execute(
        "UPDATE rooms SET published = ?2 WHERE room_id = ?1",
        params![room_id, published],
    )?;
    Ok(())
}

/// Inserts a new (non-outlier) event, makes it the room's only forward extremity in place of the
/// events it references, records a client send in `client_txns`, and returns its stream ordering.
pub fn insert_event_txn(txn: &Connection, event: &NewEvent<'_>) -> Result<EventNid> {
    txn.prepare_cached(
        "INSERT INTO events (event_id, room_id, sender, type, state_key, membership, depth,
                             origin_server_ts, json, state_before, state_after, txn_device, txn_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12)",
    )?
    .execute(params![
        event.event_id,
        event.room_id,
        event.sender,
        event.kind,
        event.state_key,
        event.membership,
        event.depth,
        event.origin_server_ts,
        event.json,
        event.state_before,
        event.txn.map(|(device, _)| device),
        event.txn.map(|(_, txn_id)| txn_id)
    ])?;
    let nid = txn.last_insert_rowid();
    if event.txn.is_some() {
        super::client_txns::record_txn(txn, nid, super::now_ms())?;
    }
    let mut extremity =
        txn.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1 AND event_id = ?2")?;
    for prev in event.prev_events {
        extremity.execute(params![event.room_id, prev])?;
    }
    txn.prepare_cached("INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)")?
        .execute(params![event.room_id, event.event_id])?;
    Ok(nid)
}

/// Records the state after a state event (a new group); other events keep the state before.
pub fn set_state_after_txn(txn: &Connection, nid: EventNid, group: i64) -> Result<()> {
    txn.prepare_cached("UPDATE events SET state_after = ?2 WHERE stream_ordering = ?1")?
        .execute(params![nid, group])?;
    Ok(())
}

pub fn insert_relation_txn(
    txn: &Connection,
    event_id: &str,
    relates_to: &str,
    rel_type: &str,
    room_id: &str,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT OR IGNORE INTO event_relations (event_id, relates_to, rel_type, room_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![event_id, relates_to, rel_type, room_id])?;
    Ok(())
}

/// Replaces the stored copy of an event with its redacted form.
pub fn redact_event_txn(
    txn: &Connection,
    event_id: &str,
    redacted_json: &str,
    redacted_by: &str,
) -> Result<()> {
    txn.execute(
        "UPDATE events SET json = ?2, redacted_by = ?3 WHERE event_id = ?1",
        params![event_id, redacted_json, redacted_by],
    )?;
    txn.execute(
        "DELETE FROM event_relations WHERE event_id = ?1",
        [event_id],
    )?;
    Ok(())
}

pub fn forward_extremities(conn: &Connection, room_id: &str) -> Result<Vec<EventRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM forward_extremities f JOIN events e ON e.event_id = f.event_id
         WHERE f.room_id = ?1 ORDER BY e.stream_ordering"
    ))?;
    let rows = stmt.query_map([room_id], event_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn max_depth(conn: &Connection, events: &[String]) -> Result<i64> {
    let mut stmt = conn.prepare_cached("SELECT depth FROM events WHERE event_id = ?1")?;
    let mut max = 0;
    for event in events {
        let depth: Option<i64> = stmt.query_row([event], |r| r.get(0)).optional()?;
        max = max.max(depth.unwrap_or(0));
    }
    Ok(max)
}

pub(super) const COLUMNS: &str = "e.stream_ordering, e.event_id, e.room_id, e.json, e.state_before, e.state_after, e.redacted_by";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    event_row_at(r, 0)
}

/// An event row from `COLUMNS` starting at column `offset`.
pub(super) fn event_row_at(r: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        nid: r.get(offset)?,
        event_id: r.get(offset + 1)?,
        room_id: r.get(offset + 2)?,
        json: r.get(offset + 3)?,
        state_before: r.get(offset + 4)?,
        state_after: r.get(offset + 5)?,
        redacted_by: r.get(offset + 6)?,
    })
}

pub fn get_event(conn: &Connection, event_id: &str) -> Result<Option<EventRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events e WHERE e.event_id = ?1 AND e.rejected_reason IS NULL"
        ))?
        .query_row([event_id], event_row)
        .optional()?)
}

pub fn get_event_by_nid(conn: &Connection, nid: EventNid) -> Result<Option<EventRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events e WHERE e.stream_ordering = ?1"
        ))?
        .query_row([nid], event_row)
        .optional()?)
}

/// Events of a room strictly between two stream positions, in the given direction, at most
/// `limit` of them. `types`/`not_types`/`senders`/`not_senders` filter when non-empty.
pub struct Page<'a> {
    pub room_id: &'a str,
    pub from: i64,
    pub to: Option<i64>,
    pub backwards: bool,
    pub limit: usize,
    pub types: &'a [String],
    pub not_types: &'a [String],
    pub senders: &'a [String],
    pub not_senders: &'a [String],
}

pub fn page_events(conn: &Connection, page: &Page<'_>) -> Result<Vec<EventRow>> {
    let (cmp, order) = if page.backwards {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let bound = match (page.to, page.backwards) {
        (Some(_), true) => "AND e.stream_ordering > ?3",
        (Some(_), false) => "AND e.stream_ordering < ?3",
        (None, _) => "AND ?3 IS NULL",
    };
    // Event types may use `*` as a wildcard (GLOB); senders are matched exactly.
    let mut filters = String::new();
    let lists = [
        ("", "e.type GLOB", page.types),
        ("NOT ", "e.type GLOB", page.not_types),
        ("", "e.sender =", page.senders),
        ("NOT ", "e.sender =", page.not_senders),
    ];
    let mut values: Vec<String> = Vec::new();
    for (negation, test, list) in lists {
        if list.is_empty() {
            continue;
        }
        let glob = test.ends_with("GLOB");
        let alternatives: Vec<String> = list
            .iter()
            .map(|v| {
                values.push(if glob { glob_pattern(v) } else { v.clone() });
                format!("{test} ?{}", 4 + values.len())
            })
            .collect();
        filters.push_str(&format!(" AND {negation}({})", alternatives.join(" OR ")));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM events e
         WHERE e.room_id = ?1 AND e.stream_ordering {cmp} ?2 {bound}
           AND e.outlier = 0 AND e.rejected_reason IS NULL AND e.soft_failed = 0 {filters}
         ORDER BY e.stream_ordering {order} LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&page.room_id, &page.from, &page.to];
    let limit = page.limit as i64;
    args.push(&limit);
    for v in &values {
        args.push(v);
    }
    let rows = stmt.query_map(args.as_slice(), event_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A GLOB pattern matching `filter` where only `*` is special.
fn glob_pattern(filter: &str) -> String {
    filter
        .chars()
        .map(|c| match c {
            '?' => "[?]".to_owned(),
            '[' => "[[]".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

/// The highest stream position of any event.
pub fn max_stream_ordering(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(stream_ordering), 0) FROM events",
        [],
        |r| r.get(0),
    )?)
}

/// The transaction id the given device sent an event with, if it sent it.
pub fn txn_id_of(
    conn: &Connection,
    event_id: &str,
    user_id: &str,
    device_id: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT txn_id FROM events WHERE event_id = ?1 AND sender = ?2 AND txn_device = ?3",
        )?
        .query_row(params![event_id, user_id, device_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Stream positions at which `user_id` joined the room (for "joined at any point after").
pub fn join_positions(conn: &Connection, room_id: &str, user_id: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stream_ordering FROM events WHERE room_id = ?1 AND type = 'm.room.member'
           AND state_key = ?2 AND membership = 'join' ORDER BY stream_ordering",
    )?;
    let rows = stmt.query_map(params![room_id, user_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Inside a write: the state group after the given previous events, for an event built on them
/// before they were committed. Refuses (aborting the write) when one of them was never written,
/// so nothing is stored on top of a failed write.
pub fn state_after_of_prev_txn(txn: &Connection, prev_events: &[String]) -> Result<Option<i64>> {
    let mut stmt =
        txn.prepare_cached("SELECT state_after, room_id FROM events WHERE event_id = ?1")?;
    let mut state = None;
    let mut groups = Vec::new();
    let mut room = None;
    for prev in prev_events {
        let found: Option<(Option<i64>, String)> = stmt
            .query_row([prev], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match found {
            Some((group, room_id)) => {
                state = group;
                groups.extend(group.filter(|g| !groups.contains(g)));
                room = Some(room_id);
            }
            None => {
                return Err(super::StorageError::Aborted(format!(
                    "previous event {prev} was not persisted"
                )));
            }
        }
    }
    // Forked history: an event built on every forward extremity has the room's current state
    // before it, which the ingest of received events keeps resolved over the extremities.
    if groups.len() > 1
        && let (Some(parent), Some(room)) = (state, room)
    {
        return Ok(Some(super::received::group_of_current_state_txn(
            txn, &room, parent,
        )?));
    }
    Ok(state)
}

/// The state group after the room's last event at or before stream position `position`.
pub fn state_at_position(conn: &Connection, room_id: &str, position: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT state_after FROM events WHERE room_id = ?1 AND stream_ordering <= ?2 AND outlier = 0
               AND rejected_reason IS NULL AND soft_failed = 0 ORDER BY stream_ordering DESC LIMIT 1",
        )?
        .query_row(params![room_id, position], |r| r.get(0))
        .optional()?
        .flatten())
}

/// State events of a room with stream positions in (`after`, `before`), oldest first, with their
/// (type, state_key).
pub fn state_events_between(
    conn: &Connection,
    room_id: &str,
    after: i64,
    before: i64,
) -> Result<Vec<((String, String), EventRow)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.type, e.state_key, {COLUMNS} FROM events e
         WHERE e.room_id = ?1 AND e.stream_ordering > ?2 AND e.stream_ordering < ?3
           AND e.state_key IS NOT NULL AND e.outlier = 0 AND e.rejected_reason IS NULL
           AND e.soft_failed = 0
         ORDER BY e.stream_ordering"
    ))?;
    let rows = stmt.query_map(params![room_id, after, before], |r| {
        Ok(((r.get(0)?, r.get(1)?), event_row_at(r, 2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
