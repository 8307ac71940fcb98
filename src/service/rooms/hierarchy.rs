//! Spaces: `/hierarchy` walks `m.space.child` links breadth-first from a space and lists the
//! rooms this server knows that the user is in or could join or peek into, each with its summary
//! and its own child links. Rooms only other servers know are left out until federation.

use std::collections::{HashSet, VecDeque};

use ruma::room::{JoinRuleSummary, RoomSummary};
use ruma::{OwnedRoomId, RoomId};
use serde_json::{Value as JsonValue, json};

use super::super::{Error, Result, Services, UserSession};
use super::summary::read_summary;
use crate::storage::{self, state};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;
const MAX_DEPTH: usize = 10;

/// One room of the hierarchy.
pub struct HierarchyRoom {
    pub summary: RoomSummary,
    pub children_state: Vec<JsonValue>,
}

pub struct HierarchyQuery {
    pub from: Option<String>,
    pub limit: Option<usize>,
    pub max_depth: Option<usize>,
    pub suggested_only: bool,
}

impl Services {
    pub async fn hierarchy(
        &self,
        session: &UserSession,
        root: &RoomId,
        query: HierarchyQuery,
    ) -> Result<(Vec<HierarchyRoom>, Option<String>)> {
        let skip = match query.from.as_deref() {
            Some(token) => token
                .strip_prefix("h1_")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| Error::InvalidParam(format!("invalid hierarchy token {token:?}")))?,
            None => 0,
        };
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let max_depth = query.max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
        let (user, root) = (session.user_id.to_string(), root.to_owned());
        let (rooms, more) = self
            .db
            .read(move |c| {
                let mut queue = VecDeque::from([(root.clone(), 0usize)]);
                let mut seen = HashSet::from([root.clone()]);
                let mut listed = Vec::new();
                let mut index = 0;
                while let Some((room_id, depth)) = queue.pop_front() {
                    let Some(summary) = read_summary(c, &room_id)? else {
                        continue;
                    };
                    if !may_preview(c, &summary, &user)? {
                        if room_id == root {
                            return Ok(None);
                        }
                        continue;
                    }
                    let children = child_links(c, &room_id, query.suggested_only)?;
                    if depth < max_depth {
                        for child in &children {
                            if let Some(id) = child.get("state_key").and_then(JsonValue::as_str)
                                && let Ok(id) = OwnedRoomId::try_from(id)
                                && seen.insert(id.clone())
                            {
                                queue.push_back((id, depth + 1));
                            }
                        }
                    }
                    if index >= skip {
                        if listed.len() == limit {
                            return Ok(Some((listed, true)));
                        }
                        listed.push(HierarchyRoom {
                            summary,
                            children_state: children,
                        });
                    }
                    index += 1;
                }
                Ok(Some((listed, false)))
            })
            .await?
            .ok_or_else(|| Error::Forbidden("you cannot see this space".into()))?;
        let next = more.then(|| format!("h1_{}", skip + rooms.len()));
        Ok((rooms, next))
    }
}

/// Whether the user may see a room's summary: they are in it, or anyone may read or join it.
fn may_preview(
    conn: &rusqlite::Connection,
    summary: &RoomSummary,
    user: &str,
) -> storage::Result<bool> {
    if summary.world_readable
        || matches!(
            summary.join_rule,
            JoinRuleSummary::Public
                | JoinRuleSummary::Knock
                | JoinRuleSummary::KnockRestricted(_)
                | JoinRuleSummary::Restricted(_)
        )
    {
        return Ok(true);
    }
    let membership = storage::rooms::membership(conn, summary.room_id.as_str(), user)?;
    Ok(membership.is_some_and(|m| m.membership == "join" || m.membership == "invite"))
}

/// A room's `m.space.child` events with a non-empty `via`, stripped as the hierarchy shows them.
pub(super) fn child_links(
    conn: &rusqlite::Connection,
    room_id: &RoomId,
    suggested_only: bool,
) -> storage::Result<Vec<JsonValue>> {
    let mut links = Vec::new();
    for nid in state::current_state_of_type(conn, room_id.as_str(), "m.space.child")? {
        let Some(row) = storage::events::get_event_by_nid(conn, nid)? else {
            continue;
        };
        let event: JsonValue = serde_json::from_str(&row.json)?;
        let content = event.get("content").cloned().unwrap_or_default();
        let via_ok = content
            .get("via")
            .and_then(JsonValue::as_array)
            .is_some_and(|v| !v.is_empty());
        let suggested = content
            .get("suggested")
            .and_then(JsonValue::as_bool)
            .unwrap_or(false);
        if !via_ok || (suggested_only && !suggested) {
            continue;
        }
        links.push(json!({
            "type": "m.space.child",
            "state_key": event.get("state_key"),
            "content": content,
            "sender": event.get("sender"),
            "origin_server_ts": event.get("origin_server_ts"),
        }));
    }
    Ok(links)
}
