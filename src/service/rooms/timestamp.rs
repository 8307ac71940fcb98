//! Jumping to a date: `/timestamp_to_event` finds the event closest to a time, at or after it
//! (forwards) or at or before it (backwards), among the events the user may see.

use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UInt};
use serde_json::Value as JsonValue;

use super::super::{Error, Result, Services, UserSession};
use super::visibility::Viewer;
use crate::storage::{self, timestamps::TsKey};

/// Events read from the index at a time.
const SCAN_BATCH: usize = 100;
/// The most events one request looks at. Events the user may not see are skipped; past this many
/// the answer is "not found" rather than a scan of a whole room's history.
const MAX_SCANNED: usize = 10_000;

impl Services {
    /// The visible event closest to `ts` in the given direction, with its timestamp. The user must
    /// be or have been in the room, or the room must be world-readable (`M_FORBIDDEN`); with no
    /// such event the answer is `M_NOT_FOUND`.
    pub async fn event_at_timestamp(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        ts: MilliSecondsSinceUnixEpoch,
        backwards: bool,
    ) -> Result<(OwnedEventId, MilliSecondsSinceUnixEpoch)> {
        let (room, user) = (room_id.to_string(), session.user_id.to_string());
        let millis = i64::from(ts.get());
        let found = self
            .db
            .read(move |c| {
                let mut viewer = Viewer::new(c, &room, &user)?;
                let ever_member = viewer.is_joined()
                    || (!viewer.has_forgotten()
                        && storage::rooms::membership(c, &room, &user)?.is_some());
                if !ever_member && !world_readable(c, &room)? {
                    return Ok(Err(()));
                }
                let mut after: Option<TsKey> = None;
                let mut scanned = 0;
                while scanned < MAX_SCANNED {
                    let batch = storage::timestamps::events_from_ts(
                        c, &room, millis, after, backwards, SCAN_BATCH,
                    )?;
                    let exhausted = batch.len() < SCAN_BATCH;
                    scanned += batch.len();
                    for (key, row) in batch {
                        after = Some(key);
                        if viewer.can_see(c, &row)? {
                            return Ok(Ok(Some((row.event_id, key.origin_server_ts))));
                        }
                    }
                    if exhausted {
                        break;
                    }
                }
                Ok(Ok(None))
            })
            .await?
            .map_err(|()| Error::Forbidden(format!("you are not in room {room_id}")))?;
        let direction = if backwards { "backwards" } else { "forwards" };
        let (event_id, event_ts) = found.ok_or_else(|| {
            Error::NotFound(format!(
                "no event from {millis} {direction} in {room_id} that you can see"
            ))
        })?;
        let event_id = OwnedEventId::try_from(event_id)
            .map_err(|e| Error::Internal(format!("stored event id is invalid: {e}")))?;
        let event_ts = UInt::try_from(event_ts)
            .map(MilliSecondsSinceUnixEpoch)
            .map_err(|e| Error::Internal(format!("stored event timestamp is invalid: {e}")))?;
        Ok((event_id, event_ts))
    }
}

/// Whether anyone may read the room now (`history_visibility` is `world_readable`).
fn world_readable(conn: &rusqlite::Connection, room_id: &str) -> storage::Result<bool> {
    let state =
        storage::directory::current_state_json(conn, room_id, &["m.room.history_visibility"])?;
    Ok(state.iter().any(|(_, json)| {
        serde_json::from_str::<JsonValue>(json)
            .ok()
            .is_some_and(|event| {
                event
                    .pointer("/content/history_visibility")
                    .and_then(JsonValue::as_str)
                    == Some("world_readable")
            })
    }))
}
