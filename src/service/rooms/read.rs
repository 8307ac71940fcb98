//! Reading rooms back: single events, state, members, joined rooms and `/messages` pagination,
//! always through history visibility.

use ruma::{EventId, RoomId, UserId};
use serde_json::{Map, Value as JsonValue};

use super::super::{Error, Result, Services, UserSession};
use super::StreamToken;
use super::append::pdu_from_row;
use super::visibility::Viewer;
use crate::storage::{self, events::EventRow, events::Page, state};

/// The most events one `/messages` page returns.
const MAX_PAGE: usize = 1000;

/// `/messages` parameters.
#[derive(Clone)]
pub struct MessagesQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub backwards: bool,
    pub limit: usize,
    pub types: Vec<String>,
    pub not_types: Vec<String>,
    pub senders: Vec<String>,
    pub not_senders: Vec<String>,
}

pub struct MessagesPage {
    pub start: String,
    pub end: Option<String>,
    pub chunk: Vec<JsonValue>,
}

/// `/members` filters.
pub struct MembersQuery {
    /// A pagination token: members as of that point of the timeline.
    pub at: Option<String>,
    pub membership: Option<String>,
    pub not_membership: Option<String>,
}

impl Services {
    /// An event in the client format, if the user may see it; `M_NOT_FOUND` otherwise.
    pub async fn get_event(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<JsonValue> {
        let (room, user, id) = (
            room_id.to_string(),
            session.user_id.to_string(),
            event_id.to_string(),
        );
        let device = session.device_id.to_string();
        self.db
            .read(move |c| {
                let Some(row) = storage::events::get_event(c, &id)? else {
                    return Ok(None);
                };
                let mut viewer = Viewer::new(c, &room, &user)?;
                if !viewer.can_see(c, &row)? {
                    return Ok(None);
                }
                Ok(Some(client_events_for(c, &[row], &user, &device)))
            })
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("event {event_id} not found or not visible to you"))
            })?
            .and_then(|mut events| {
                events
                    .pop()
                    .ok_or_else(|| Error::Internal("no event".into()))
            })
    }

    /// The state group a user may read a room's state at: the current state while joined, the
    /// state when they left otherwise; `M_FORBIDDEN` when they were never in the room.
    async fn readable_state(&self, session: &UserSession, room_id: &RoomId) -> Result<Option<i64>> {
        let (room, user) = (room_id.to_string(), session.user_id.to_string());
        let membership = self
            .db
            .read(move |c| storage::rooms::membership(c, &room, &user))
            .await?;
        match membership {
            Some(m) if m.membership == "join" => Ok(None),
            Some(m) if !m.forgotten && (m.membership == "leave" || m.membership == "ban") => {
                let row = self
                    .db
                    .read(move |c| storage::events::get_event_by_nid(c, m.event_nid))
                    .await?;
                Ok(row.and_then(|r| r.state_after))
            }
            _ if self.is_world_readable(room_id).await? => Ok(None),
            _ => Err(Error::Forbidden(format!("you are not in room {room_id}"))),
        }
    }

    /// Whether anyone may read the room (`history_visibility` is `world_readable` now).
    async fn is_world_readable(&self, room_id: &RoomId) -> Result<bool> {
        let room = room_id.to_string();
        let row = self
            .db
            .read(move |c| {
                let nid = state::current_state_event(c, &room, "m.room.history_visibility", "")?;
                nid.map(|n| storage::events::get_event_by_nid(c, n))
                    .transpose()
                    .map(Option::flatten)
            })
            .await?;
        let visibility = row
            .and_then(|r| serde_json::from_str::<JsonValue>(&r.json).ok())
            .and_then(|e| {
                e.pointer("/content/history_visibility")
                    .and_then(JsonValue::as_str)
                    .map(str::to_owned)
            });
        Ok(visibility.as_deref() == Some("world_readable"))
    }

    /// Every state event of a room the user may read.
    pub async fn room_state(
        &self,
        session: &UserSession,
        room_id: &RoomId,
    ) -> Result<Vec<JsonValue>> {
        let at = self.readable_state(session, room_id).await?;
        let room = room_id.to_string();
        let rows: Vec<EventRow> = self
            .db
            .read(move |c| {
                let nids: Vec<i64> = match at {
                    None => state::current_state(c, &room)?,
                    Some(group) => state::load_state(c, group)?.into_values().collect(),
                };
                nids.into_iter()
                    .filter_map(|n| storage::events::get_event_by_nid(c, n).transpose())
                    .collect()
            })
            .await?;
        rows.iter().map(client_event).collect()
    }

    /// One state event, in the client format.
    pub async fn state_event(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<JsonValue> {
        let at = self.readable_state(session, room_id).await?;
        let (room, kind_text, key) = (room_id.to_string(), kind.to_owned(), state_key.to_owned());
        let row = self
            .db
            .read(move |c| {
                let nid = match at {
                    None => state::current_state_event(c, &room, &kind_text, &key)?,
                    Some(group) => match state::key_nid(c, &kind_text, &key)? {
                        Some(k) => state::lookup(c, group, k)?,
                        None => None,
                    },
                };
                nid.map(|n| storage::events::get_event_by_nid(c, n))
                    .transpose()
                    .map(Option::flatten)
            })
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no {kind} state with key {state_key:?} in {room_id}"
                ))
            })?;
        client_event(&row)
    }

    /// Member events of a room, filtered by membership.
    pub async fn members(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        query: MembersQuery,
    ) -> Result<Vec<JsonValue>> {
        let state = self.room_state(session, room_id).await?;
        Ok(state
            .into_iter()
            .filter(|event| event.get("type").and_then(JsonValue::as_str) == Some("m.room.member"))
            .filter(|event| {
                let membership = event
                    .pointer("/content/membership")
                    .and_then(JsonValue::as_str);
                // Given together, the two filters mean "either" (the specification's "or").
                match (query.membership.as_deref(), query.not_membership.as_deref()) {
                    (None, None) => true,
                    (Some(m), None) => membership == Some(m),
                    (None, Some(n)) => membership != Some(n),
                    (Some(m), Some(n)) => membership == Some(m) || membership != Some(n),
                }
            })
            .collect())
    }

    /// Joined members with their display names and avatars (for joined users only).
    pub async fn joined_members(
        &self,
        session: &UserSession,
        room_id: &RoomId,
    ) -> Result<Map<String, JsonValue>> {
        self.require_joined(room_id, &session.user_id).await?;
        let members = self
            .members(
                session,
                room_id,
                MembersQuery {
                    at: None,
                    membership: Some("join".into()),
                    not_membership: None,
                },
            )
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|event| {
                let user = event.get("state_key")?.as_str()?.to_owned();
                let content = event.get("content")?;
                let mut profile = Map::new();
                for (field, key) in [
                    ("displayname", "display_name"),
                    ("avatar_url", "avatar_url"),
                ] {
                    if let Some(value) = content.get(field).filter(|v| v.is_string()) {
                        profile.insert(key.into(), value.clone());
                    }
                }
                Some((user, JsonValue::Object(profile)))
            })
            .collect())
    }

    pub async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<String>> {
        let user = user_id.to_string();
        Ok(self
            .db
            .read(move |c| storage::rooms::rooms_of_user(c, &user, "join"))
            .await?)
    }

    /// `/messages`: a page of visible events in either direction. A backwards page that runs
    /// out of events in a room joined over federation fetches older history from the room's
    /// other servers first (`remote_backfill.rs`) and is then read again.
    pub async fn messages(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        query: MessagesQuery,
    ) -> Result<MessagesPage> {
        let retry = (query.backwards && query.to.is_none()).then(|| query.clone());
        let limit = query.limit.clamp(1, MAX_PAGE);
        let page = self.messages_page(session, room_id, query).await?;
        if let Some(query) = retry
            && page.end.is_none()
        {
            match self.backfill_from_remote(room_id, limit).await {
                Ok(true) => return self.messages_page(session, room_id, query).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(room.id = %room_id, error = %e, "backfill failed");
                }
            }
        }
        Ok(page)
    }

    async fn messages_page(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        query: MessagesQuery,
    ) -> Result<MessagesPage> {
        let (room, user) = (room_id.to_string(), session.user_id.to_string());
        let device = session.device_id.to_string();
        let from = query.from.as_deref().map(StreamToken::parse).transpose()?;
        let to = query.to.as_deref().map(StreamToken::parse).transpose()?;
        let limit = query.limit.clamp(1, MAX_PAGE);
        let rows = self
            .db
            .read(move |c| {
                let mut viewer = Viewer::new(c, &room, &user)?;
                let ever_member = viewer.is_joined()
                    || (!viewer.has_forgotten()
                        && storage::rooms::membership(c, &room, &user)?.is_some());
                let start = match from {
                    Some(t) => t.events,
                    None if query.backwards => storage::events::max_stream_ordering(c)?,
                    None => 0,
                };
                let mut cursor = start;
                let mut visible = Vec::new();
                let mut exhausted = false;
                // Invisible events are skipped; a bounded number of extra reads fills the page.
                for _ in 0..8 {
                    if visible.len() >= limit {
                        break;
                    }
                    let batch = storage::events::page_events(
                        c,
                        &Page {
                            room_id: &room,
                            from: if query.backwards { cursor + 1 } else { cursor },
                            to: to.map(|t| {
                                if query.backwards {
                                    t.events
                                } else {
                                    t.events + 1
                                }
                            }),
                            backwards: query.backwards,
                            limit: limit - visible.len(),
                            types: &query.types,
                            not_types: &query.not_types,
                            senders: &query.senders,
                            not_senders: &query.not_senders,
                        },
                    )?;
                    if batch.len() < limit - visible.len() {
                        exhausted = true;
                    }
                    for row in batch {
                        cursor = if query.backwards {
                            row.nid - 1
                        } else {
                            row.nid
                        };
                        if viewer.can_see(c, &row)? {
                            visible.push(row);
                        }
                    }
                    if exhausted {
                        break;
                    }
                }
                let chunk = client_events_for(c, &visible, &user, &device);
                Ok((ever_member, start, cursor, exhausted, chunk))
            })
            .await?;
        let (ever_member, start, cursor, exhausted, chunk) = rows;
        let chunk = chunk?;
        if !ever_member && chunk.is_empty() {
            return Err(Error::Forbidden(format!("you are not in room {room_id}")));
        }
        // With no further events in this direction, `end` is left out, as the specification says.
        let end = (!exhausted).then(|| {
            // Negative positions are backfilled history (`storage::backfill`).
            StreamToken { events: cursor }.encode()
        });
        Ok(MessagesPage {
            start: StreamToken { events: start }.encode(),
            end,
            chunk,
        })
    }
}

/// An event row in the client format.
pub fn client_event(row: &EventRow) -> Result<JsonValue> {
    Ok(JsonValue::Object(pdu_from_row(row)?.to_client_event()))
}

/// Events in the client format as `user` on `device` sees them: the device that sent an event
/// finds its `transaction_id` in `unsigned`.
pub fn client_events_for(
    conn: &rusqlite::Connection,
    rows: &[EventRow],
    user: &str,
    device: &str,
) -> Result<Vec<JsonValue>> {
    let mut events = rows
        .iter()
        .map(|row| {
            let mut event = client_event(row)?;
            if event.get("sender").and_then(JsonValue::as_str) == Some(user)
                && let Some(txn_id) = storage::events::txn_id_of(conn, &row.event_id, user, device)?
            {
                event["unsigned"]["transaction_id"] = JsonValue::String(txn_id);
            }
            Ok(event)
        })
        .collect::<Result<Vec<_>>>()?;
    super::relations::bundle_relations(conn, rows, &mut events, user)?;
    Ok(events)
}
