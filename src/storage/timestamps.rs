//! Events of a room in `origin_server_ts` order, for `/timestamp_to_event`, along the
//! `events_by_room_ts` index (room, timestamp; the stream ordering, being the rowid, breaks ties).

use rusqlite::{Connection, params};

use super::Result;
use super::events::EventRow;

/// A position in a room's timestamp order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsKey {
    pub origin_server_ts: i64,
    pub stream_ordering: i64,
}

/// Up to `limit` timeline events of a room from `start` on: forwards, those at or after
/// `start.origin_server_ts` in ascending order; backwards, those at or before it in descending
/// order. With `start.stream_ordering` set (continuing a scan), the event at `start` itself and
/// those on its near side are skipped. Outliers, rejected and soft-failed events are never
/// returned.
pub fn events_from_ts(
    conn: &Connection,
    room_id: &str,
    start: TsKey,
    continuing: bool,
    backwards: bool,
    limit: usize,
) -> Result<Vec<(TsKey, EventRow)>> {
    let sql = match (backwards, continuing) {
        (false, false) => "e.origin_server_ts >= ?2 AND ?3 IS NOT NULL ORDER BY e.origin_server_ts ASC, e.stream_ordering ASC",
        (false, true) => "(e.origin_server_ts > ?2 OR (e.origin_server_ts = ?2 AND e.stream_ordering > ?3)) ORDER BY e.origin_server_ts ASC, e.stream_ordering ASC",
        (true, false) => "e.origin_server_ts <= ?2 AND ?3 IS NOT NULL ORDER BY e.origin_server_ts DESC, e.stream_ordering DESC",
        (true, true) => "(e.origin_server_ts < ?2 OR (e.origin_server_ts = ?2 AND e.stream_ordering < ?3)) ORDER BY e.origin_server_ts DESC, e.stream_ordering DESC",
    };
    let sql = format!(
        "SELECT e.stream_ordering, e.event_id, e.room_id, e.json, e.state_before, e.state_after,
                e.redacted_by, e.origin_server_ts
         FROM events e INDEXED BY events_by_room_ts
         WHERE e.room_id = ?1 AND e.outlier = 0 AND e.rejected_reason IS NULL
           AND e.soft_failed = 0 AND {sql} LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            room_id,
            start.origin_server_ts,
            start.stream_ordering,
            limit as i64
        ],
        |r| {
            let row = EventRow {
                nid: r.get(0)?,
                event_id: r.get(1)?,
                room_id: r.get(2)?,
                json: r.get(3)?,
                state_before: r.get(4)?,
                state_after: r.get(5)?,
                redacted_by: r.get(6)?,
            };
            let key = TsKey {
                origin_server_ts: r.get(7)?,
                stream_ordering: row.nid,
            };
            Ok((key, row))
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
