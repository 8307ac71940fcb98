//! Events of a room in `origin_server_ts` order, for `/timestamp_to_event`, along the
//! `events_by_room_ts` index (room, timestamp; the stream ordering, being the rowid, breaks ties).

use rusqlite::{Connection, params};

use super::Result;
use super::events::{COLUMNS, EventRow, event_row_at};

/// A position in a room's timestamp order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsKey {
    pub origin_server_ts: i64,
    pub stream_ordering: i64,
}

/// Up to `limit` timeline events of a room in timestamp order from `ts` on: forwards, those at or
/// after `ts` in ascending order; backwards, those at or before it in descending order. `after`
/// continues an earlier scan: the event it names and those on its near side are skipped.
/// Outliers, rejected and soft-failed events are never returned.
pub fn events_from_ts(
    conn: &Connection,
    room_id: &str,
    ts: i64,
    after: Option<TsKey>,
    backwards: bool,
    limit: usize,
) -> Result<Vec<(TsKey, EventRow)>> {
    let (cmp, order) = if backwards {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let bound = match after {
        None => format!("e.origin_server_ts {cmp}= ?2"),
        Some(_) => format!(
            "(e.origin_server_ts {cmp} ?2 OR (e.origin_server_ts = ?2 AND e.stream_ordering {cmp} ?3))"
        ),
    };
    let sql = format!(
        "SELECT {COLUMNS}, e.origin_server_ts
         FROM events e
         WHERE e.room_id = ?1 AND {bound}
           AND e.outlier = 0 AND e.rejected_reason IS NULL AND e.soft_failed = 0
         ORDER BY e.origin_server_ts {order}, e.stream_ordering {order} LIMIT ?4"
    );
    let (ts, after_nid) = match after {
        Some(key) => (key.origin_server_ts, Some(key.stream_ordering)),
        None => (ts, None),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![room_id, ts, after_nid, limit as i64], |r| {
        let row = event_row_at(r, 0)?;
        let key = TsKey {
            origin_server_ts: r.get(7)?,
            stream_ordering: row.nid,
        };
        Ok((key, row))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::{NewEvent, insert_event_txn, insert_room_txn};

    fn db() -> Connection {
        crate::storage::migrated_in_memory()
    }

    fn event(conn: &Connection, id: &str, ts: i64) -> i64 {
        insert_event_txn(
            conn,
            &NewEvent {
                origin_server_ts: ts,
                ..crate::storage::test_message(id, &[], "{}")
            },
        )
        .unwrap()
    }

    fn ids(found: &[(TsKey, EventRow)]) -> Vec<&str> {
        found.iter().map(|(_, row)| row.event_id.as_str()).collect()
    }

    #[test]
    fn scans_start_at_the_timestamp_and_continue_past_ties() {
        let conn = db();
        insert_room_txn(&conn, "!r:x", "11", "@a:x", 0).unwrap();
        event(&conn, "$a", 10);
        event(&conn, "$b", 20);
        event(&conn, "$c", 20);
        event(&conn, "$d", 30);
        let forwards = events_from_ts(&conn, "!r:x", 20, None, false, 2).unwrap();
        assert_eq!(ids(&forwards), ["$b", "$c"]);
        let rest = events_from_ts(&conn, "!r:x", 20, Some(forwards[0].0), false, 5).unwrap();
        assert_eq!(ids(&rest), ["$c", "$d"]);
        let backwards = events_from_ts(&conn, "!r:x", 25, None, true, 5).unwrap();
        assert_eq!(ids(&backwards), ["$c", "$b", "$a"]);
        let rest = events_from_ts(&conn, "!r:x", 25, Some(backwards[0].0), true, 5).unwrap();
        assert_eq!(ids(&rest), ["$b", "$a"]);
        assert!(
            events_from_ts(&conn, "!r:x", 31, None, false, 5)
                .unwrap()
                .is_empty()
        );
        assert!(
            events_from_ts(&conn, "!r:x", 9, None, true, 5)
                .unwrap()
                .is_empty()
        );
    }
}
