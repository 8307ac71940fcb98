//! The event stream as the outboxes read it (federation and appservices): each event by stream
//! ordering, with what deciding its recipients needs and whether it may be sent at all.

use rusqlite::{Connection, params};

use super::Result;
use super::state::EventNid;

/// An event of the stream, with what an outbox needs to decide who gets it.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub nid: EventNid,
    pub room_id: String,
    pub sender: String,
    pub kind: String,
    pub state_key: Option<String>,
    pub membership: Option<String>,
    pub outlier: bool,
    /// False for rejected and soft-failed events, which are never sent.
    pub accepted: bool,
}

impl StreamEvent {
    /// An accepted event of the room's timeline (not an outlier): one other servers are sent.
    pub fn sendable(&self) -> bool {
        self.accepted && !self.outlier
    }
}

/// Up to `limit` events after stream ordering `after`, oldest first.
pub fn events_after(conn: &Connection, after: i64, limit: usize) -> Result<Vec<StreamEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stream_ordering, room_id, sender, type, state_key, membership, outlier,
                rejected_reason IS NULL AND soft_failed = 0
         FROM events WHERE stream_ordering > ?1 ORDER BY stream_ordering LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit as i64], |r| {
        Ok(StreamEvent {
            nid: r.get(0)?,
            room_id: r.get(1)?,
            sender: r.get(2)?,
            kind: r.get(3)?,
            state_key: r.get(4)?,
            membership: r.get(5)?,
            outlier: r.get(6)?,
            accepted: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
