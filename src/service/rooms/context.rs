//! `/context/{eventId}`: an event with the visible events around it and the room state at the
//! last event returned.

use ruma::{EventId, RoomId};
use serde_json::Value as JsonValue;

use super::super::{Error, Result, Services, UserSession};
use super::StreamToken;
use super::read::{client_event, client_events_for};
use super::visibility::Viewer;
use crate::storage::{self, events::Page, state};

/// The most events on each side of the event.
const MAX_CONTEXT: usize = 100;

pub struct Context {
    pub event: JsonValue,
    pub before: Vec<JsonValue>,
    pub after: Vec<JsonValue>,
    pub start: String,
    pub end: String,
    pub state: Vec<JsonValue>,
}

impl Services {
    pub async fn context(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
    ) -> Result<Context> {
        let (room, user, device, id) = (
            room_id.to_string(),
            session.user_id.to_string(),
            session.device_id.to_string(),
            event_id.to_string(),
        );
        let limit = limit.min(MAX_CONTEXT * 2);
        self.db
            .read(move |c| {
                let mut viewer = Viewer::new(c, &room, &user)?;
                let Some(row) = storage::events::get_event(c, &id)? else {
                    return Ok(None);
                };
                if row.room_id != room || !viewer.can_see(c, &row)? {
                    return Ok(None);
                }
                let side = |backwards: bool, count: usize| Page {
                    room_id: &room,
                    from: row.nid,
                    to: None,
                    backwards,
                    limit: count,
                    types: &[],
                    not_types: &[],
                    senders: &[],
                    not_senders: &[],
                };
                // Half the limit before the event, the rest after, as other servers split it.
                let before_count = limit / 2;
                let mut before = Vec::new();
                for candidate in storage::events::page_events(c, &side(true, before_count))? {
                    if viewer.can_see(c, &candidate)? {
                        before.push(candidate);
                    }
                }
                let mut after = Vec::new();
                for candidate in
                    storage::events::page_events(c, &side(false, limit - before_count))?
                {
                    if viewer.can_see(c, &candidate)? {
                        after.push(candidate);
                    }
                }
                let start = before.last().map_or(row.nid - 1, |e| e.nid - 1);
                let last = after.last().unwrap_or(&row);
                let end = last.nid;
                let state_rows = match last.state_after {
                    Some(group) => state::load_state(c, group)?
                        .into_values()
                        .filter_map(|nid| storage::events::get_event_by_nid(c, nid).transpose())
                        .collect::<storage::Result<Vec<_>>>()?,
                    None => Vec::new(),
                };
                let event = client_events_for(c, std::slice::from_ref(&row), &user, &device)
                    .map(|mut v| v.pop());
                let before = client_events_for(c, &before, &user, &device);
                let after = client_events_for(c, &after, &user, &device);
                let state: Result<Vec<JsonValue>> = state_rows.iter().map(client_event).collect();
                Ok(Some((event, before, after, start, end, state)))
            })
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("event {event_id} not found or not visible to you"))
            })
            .and_then(|(event, before, after, start, end, state)| {
                Ok(Context {
                    event: event?
                        .ok_or_else(|| Error::Internal("context lost its event".into()))?,
                    before: before?,
                    after: after?,
                    start: StreamToken {
                        events: start.max(0),
                    }
                    .encode(),
                    end: StreamToken { events: end }.encode(),
                    state: state?,
                })
            })
    }
}
