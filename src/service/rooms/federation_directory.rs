//! What other servers may look up about this server's rooms without reading their history: where
//! a local alias points (`/query/directory`, with the servers in the room) and a space with its
//! children (`/hierarchy`). The public room directory is `directory.rs`, shared with clients.

use crate::service::federation_in::acl::acl_allows_in;
use ruma::room::{JoinRuleSummary, RoomSummary};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, ServerName};
use rusqlite::Connection;
use serde_json::Value as JsonValue;

use super::super::{Error, Result, Services};
use super::hierarchy::child_links;
use super::summary::read_summary;
use crate::storage;

/// A space as another server sees it: its summary and child links, the children it may preview,
/// and the ids of those it may not.
pub struct FederationHierarchy {
    pub room: RoomSummary,
    pub children_state: Vec<JsonValue>,
    pub children: Vec<RoomSummary>,
    pub inaccessible_children: Vec<OwnedRoomId>,
}

impl Services {
    /// The room a local alias points to and the servers likely to be in it, this one first.
    /// Aliases of other servers are not this server's to answer: `M_NOT_FOUND`.
    pub async fn room_alias_for_federation(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let missing = || Error::NotFound(format!("room alias {alias} does not exist"));
        if alias.server_name() != self.server_name() {
            return Err(missing());
        }
        // Resolved as for local clients: an unknown alias in an appservice's namespace is asked
        // of the appservice, which may create the room behind it now.
        let room_id = self.resolve_alias(alias).await?;
        let room = room_id.to_string();
        let servers = self
            .db
            .read(move |c| storage::room_servers::joined_servers(c, &room))
            .await?;
        let own = self.server_name().to_owned();
        let others = servers
            .iter()
            .filter_map(|s| OwnedServerName::try_from(s.as_str()).ok())
            .filter(|s| *s != own);
        Ok((
            room_id,
            std::iter::once(own.clone()).chain(others).collect(),
        ))
    }

    /// `/hierarchy/{roomId}` for `origin`: the space and its direct children (no pagination, no
    /// deeper levels: the asking server walks further itself). `M_NOT_FOUND` when the space is
    /// unknown or `origin` could not peek into or join it.
    pub async fn federation_hierarchy(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<FederationHierarchy> {
        let (origin, root) = (origin.to_owned(), room_id.to_owned());
        self.db
            .read(move |c| Ok(hierarchy(c, &origin, &root, suggested_only)))
            .await?
    }
}

fn hierarchy(
    c: &Connection,
    origin: &ServerName,
    root: &RoomId,
    suggested_only: bool,
) -> Result<FederationHierarchy> {
    let room = match read_summary(c, root)? {
        Some(_) if !acl_allows_in(c, origin, root.as_str())? => {
            return Err(Error::Forbidden(format!(
                "{origin} is denied by the server ACL of {root}"
            )));
        }
        Some(summary) if may_preview(c, &summary, origin)? => summary,
        _ => {
            return Err(Error::NotFound(format!(
                "room {root} is not known or not accessible"
            )));
        }
    };
    let children_state = child_links(c, root, suggested_only)?;
    let mut children = Vec::new();
    let mut inaccessible_children = Vec::new();
    for link in &children_state {
        let Some(child) = link
            .get("state_key")
            .and_then(JsonValue::as_str)
            .and_then(|id| OwnedRoomId::try_from(id).ok())
        else {
            continue;
        };
        // Rooms this server does not know are left out: it cannot say anything about them.
        match read_summary(c, &child)? {
            Some(summary) if may_preview(c, &summary, origin)? => children.push(summary),
            Some(_) => inaccessible_children.push(child),
            None => {}
        }
    }
    Ok(FederationHierarchy {
        room,
        children_state,
        children,
        inaccessible_children,
    })
}

/// Whether a server could peek into or join a room: anyone may read or (ask to) join it, or one
/// of the server's users is joined or invited.
fn may_preview(c: &Connection, summary: &RoomSummary, server: &ServerName) -> Result<bool> {
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
    let room = summary.room_id.as_str();
    Ok(
        storage::room_servers::server_has_member(c, room, server.as_str(), "join")?
            || storage::room_servers::server_has_member(c, room, server.as_str(), "invite")?,
    )
}
