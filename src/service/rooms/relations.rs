//! Relations: `/relations` (with `recurse`), `/threads`, and the aggregations bundled into
//! `unsigned.m.relations` of events handed to clients: the latest edit (`m.replace`) and the
//! thread summary (`m.thread`).

use std::collections::HashMap;

use ruma::{EventId, RoomId};
use serde_json::{Value as JsonValue, json};

use super::super::{Error, Result, Services, UserSession};
use super::StreamToken;
use super::read::client_events_for;
use super::visibility::Viewer;
use crate::storage::{self, events::EventRow, relations};

/// The most events one page of `/relations` or `/threads` returns.
const MAX_PAGE: usize = 100;

pub struct RelationsQuery {
    pub rel_type: Option<String>,
    pub event_type: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub backwards: bool,
    pub limit: Option<usize>,
    pub recurse: bool,
}

pub struct RelationsPage {
    pub chunk: Vec<JsonValue>,
    pub next_batch: Option<String>,
    pub recursion_depth: Option<u64>,
}

impl Services {
    /// `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`.
    pub async fn relations(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        event_id: &EventId,
        query: RelationsQuery,
    ) -> Result<RelationsPage> {
        let (room, user, device, parent) = (
            room_id.to_string(),
            session.user_id.to_string(),
            session.device_id.to_string(),
            event_id.to_string(),
        );
        let from = query.from.as_deref().map(StreamToken::parse).transpose()?;
        let to = query.to.as_deref().map(StreamToken::parse).transpose()?;
        let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let page = self
            .db
            .read(move |c| {
                let mut viewer = Viewer::new(c, &room, &user)?;
                let Some(root) = storage::events::get_event(c, &parent)? else {
                    return Ok(None);
                };
                if !viewer.can_see(c, &root)? {
                    return Ok(None);
                }
                let start = match from {
                    Some(t) if query.backwards => t.events + 1,
                    Some(t) => t.events,
                    None if query.backwards => i64::MAX,
                    None => 0,
                };
                let rows = relations::relating_events(
                    c,
                    &relations::RelationsPage {
                        parent: &parent,
                        rel_type: query.rel_type.as_deref(),
                        event_type: query.event_type.as_deref(),
                        from: start,
                        to: to.map(|t| {
                            if query.backwards {
                                t.events
                            } else {
                                t.events + 1
                            }
                        }),
                        backwards: query.backwards,
                        limit: limit + 1,
                        recurse: query.recurse,
                    },
                )?;
                let more = rows.len() > limit;
                let mut visible = Vec::new();
                let mut last = None;
                for row in rows.into_iter().take(limit) {
                    last = Some(row.nid);
                    if viewer.can_see(c, &row)? {
                        visible.push(row);
                    }
                }
                let next = last
                    .filter(|_| more)
                    .map(|nid| if query.backwards { nid - 1 } else { nid });
                Ok(Some((client_events_for(c, &visible, &user, &device), next)))
            })
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("event {event_id} not found or not visible to you"))
            })?;
        let (chunk, next) = page;
        Ok(RelationsPage {
            chunk: chunk?,
            next_batch: next.map(|events| StreamToken { events }.encode()),
            recursion_depth: query.recurse.then_some(relations::MAX_RECURSION as u64),
        })
    }

    /// `GET /rooms/{roomId}/threads`: thread roots, most recently active first.
    pub async fn threads(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        participated: bool,
        from: Option<String>,
        limit: Option<usize>,
    ) -> Result<(Vec<JsonValue>, Option<String>)> {
        let (room, user, device) = (
            room_id.to_string(),
            session.user_id.to_string(),
            session.device_id.to_string(),
        );
        let before = from
            .as_deref()
            .map(StreamToken::parse)
            .transpose()?
            .map_or(i64::MAX, |t| t.events);
        let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let (chunk, next) = self
            .db
            .read(move |c| {
                let mut viewer = Viewer::new(c, &room, &user)?;
                if !viewer.is_joined() && storage::rooms::membership(c, &room, &user)?.is_none() {
                    return Ok(None);
                }
                let participant = participated.then_some(user.as_str());
                let roots = relations::thread_roots(c, &room, before, limit + 1, participant)?;
                let more = roots.len() > limit;
                let mut visible = Vec::new();
                let mut last = None;
                for (root, latest) in roots.into_iter().take(limit) {
                    last = Some(latest);
                    if let Some(row) = storage::events::get_event(c, &root)?
                        && viewer.can_see(c, &row)?
                    {
                        visible.push(row);
                    }
                }
                Ok(Some((
                    client_events_for(c, &visible, &user, &device),
                    last.filter(|_| more),
                )))
            })
            .await?
            .ok_or_else(|| Error::Forbidden(format!("you are not in room {room_id}")))?;
        Ok((chunk?, next.map(|events| StreamToken { events }.encode())))
    }
}

/// Adds `unsigned.m.relations` to client events: the latest valid edit of each (same sender,
/// not itself a state event) and the summary of the thread each one starts.
pub(super) fn bundle_relations(
    conn: &rusqlite::Connection,
    rows: &[EventRow],
    events: &mut [JsonValue],
    user: &str,
) -> Result<()> {
    let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    let mut bundles: HashMap<String, serde_json::Map<String, JsonValue>> = HashMap::new();
    for summary in relations::thread_summaries(conn, &ids, user)? {
        let Some(latest) = storage::events::get_event_by_nid(conn, summary.latest)? else {
            continue;
        };
        let latest = super::read::client_event(&latest)?;
        bundles.entry(summary.root).or_default().insert(
            "m.thread".into(),
            json!({ "latest_event": latest, "count": summary.count, "current_user_participated": summary.participated }),
        );
    }
    let senders: HashMap<&str, &str> = events
        .iter()
        .filter_map(|e| Some((e.get("event_id")?.as_str()?, e.get("sender")?.as_str()?)))
        .collect();
    for (original, edit) in relations::replacements(conn, &ids)? {
        let bundle = bundles.entry(original.clone()).or_default();
        if bundle.contains_key("m.replace") {
            continue;
        }
        let edit = super::read::client_event(&edit)?;
        let same_sender = senders.get(original.as_str()).copied()
            == edit.get("sender").and_then(JsonValue::as_str);
        if same_sender && edit.get("state_key").is_none() {
            bundle.insert("m.replace".into(), edit);
        }
    }
    for event in events.iter_mut() {
        let Some(id) = event.get("event_id").and_then(JsonValue::as_str) else {
            continue;
        };
        if let Some(bundle) = bundles.remove(id).filter(|b| !b.is_empty()) {
            event["unsigned"]["m.relations"] = JsonValue::Object(bundle);
        }
    }
    Ok(())
}
