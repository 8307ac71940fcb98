//! Reads over `event_relations`: events relating to an event (optionally recursively), the
//! aggregations bundled into `unsigned.m.relations` (latest edit, thread summary), and a room's
//! threads ordered by latest activity.

use rusqlite::{Connection, params_from_iter};

use super::Result;
use super::events::{COLUMNS, EventRow, event_row_at};

/// How deep `recurse` follows relations of relations; the specification lets servers cap it.
pub const MAX_RECURSION: i64 = 3;

/// Events relating to `parent`, a page at a time in stream order.
pub struct RelationsPage<'a> {
    pub parent: &'a str,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Exclusive bound to start from.
    pub from: i64,
    /// Exclusive bound to stop at.
    pub to: Option<i64>,
    pub backwards: bool,
    pub limit: usize,
    pub recurse: bool,
}

pub fn relating_events(conn: &Connection, page: &RelationsPage<'_>) -> Result<Vec<EventRow>> {
    let (cmp, order, to_cmp) = if page.backwards {
        ("<", "DESC", ">")
    } else {
        (">", "ASC", "<")
    };
    let depth = if page.recurse { MAX_RECURSION } else { 1 };
    let sql = format!(
        "WITH RECURSIVE rel(event_id, rel_type, depth) AS (
             SELECT event_id, rel_type, 1 FROM event_relations WHERE relates_to = ?1
             UNION ALL
             SELECT r.event_id, r.rel_type, rel.depth + 1 FROM event_relations r
             JOIN rel ON r.relates_to = rel.event_id WHERE rel.depth < ?2
         )
         SELECT {cols} FROM rel JOIN events e ON e.event_id = rel.event_id
         WHERE e.stream_ordering {cmp} ?3 AND (?4 IS NULL OR e.stream_ordering {to_cmp} ?4)
           AND (?5 IS NULL OR rel.rel_type = ?5) AND (?6 IS NULL OR e.type = ?6)
           AND e.rejected_reason IS NULL AND e.soft_failed = 0
         ORDER BY e.stream_ordering {order} LIMIT ?7",
        cols = COLUMNS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params![
            page.parent,
            depth,
            page.from,
            page.to,
            page.rel_type,
            page.event_type,
            page.limit as i64
        ],
        |r| event_row_at(r, 0),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A thread's summary: its reply count, latest reply and whether `user` took part (by starting
/// the thread or replying in it).
pub struct ThreadSummary {
    pub root: String,
    pub count: i64,
    pub latest: i64,
    pub participated: bool,
}

fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Thread summaries of those of `roots` that have replies.
pub fn thread_summaries(
    conn: &Connection,
    roots: &[String],
    user: &str,
) -> Result<Vec<ThreadSummary>> {
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT r.relates_to, COUNT(*), MAX(e.stream_ordering),
                MAX(e.sender = ?1) OR EXISTS (SELECT 1 FROM events root
                    WHERE root.event_id = r.relates_to AND root.sender = ?1)
         FROM event_relations r JOIN events e ON e.event_id = r.event_id
         WHERE r.rel_type = 'm.thread' AND r.relates_to IN ({}) AND e.rejected_reason IS NULL
         GROUP BY r.relates_to",
        placeholders(2, roots.len())
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let args = std::iter::once(user).chain(roots.iter().map(String::as_str));
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(ThreadSummary {
            root: r.get(0)?,
            count: r.get(1)?,
            latest: r.get(2)?,
            participated: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Replacement (`m.replace`) events of each of `originals`, newest first by origin_server_ts then
/// event id, as the specification orders edits.
pub fn replacements(conn: &Connection, originals: &[String]) -> Result<Vec<(String, EventRow)>> {
    if originals.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT r.relates_to, {cols} FROM event_relations r JOIN events e ON e.event_id = r.event_id
         WHERE r.rel_type = 'm.replace' AND r.relates_to IN ({marks}) AND e.rejected_reason IS NULL
         ORDER BY e.origin_server_ts DESC, e.event_id DESC",
        cols = COLUMNS,
        marks = placeholders(1, originals.len())
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(originals.iter()), |r| {
        Ok((r.get::<_, String>(0)?, event_row_at(r, 1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Thread roots of a room with their latest activity, most recently active first, below
/// `before` (exclusive), optionally only threads `participant` took part in.
pub fn thread_roots(
    conn: &Connection,
    room_id: &str,
    before: i64,
    limit: usize,
    participant: Option<&str>,
) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.relates_to, MAX(e.stream_ordering) AS latest
         FROM event_relations r JOIN events e ON e.event_id = r.event_id
         WHERE r.room_id = ?1 AND r.rel_type = 'm.thread' AND e.rejected_reason IS NULL
         GROUP BY r.relates_to
         HAVING latest < ?2 AND (?3 IS NULL OR MAX(e.sender = ?3) = 1
             OR EXISTS (SELECT 1 FROM events root WHERE root.event_id = r.relates_to AND root.sender = ?3))
         ORDER BY latest DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![room_id, before, participant, limit as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
