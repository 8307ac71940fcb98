//! The room's `m.room.server_acl` as it applies to a server's requests about the room: every
//! Server-Server endpoint naming a room refuses a server the room's current ACL denies (the
//! specification's "Server Access Control Lists"). `/send` PDUs and EDUs check it per room
//! (`origin_may_send`); the membership handshakes and invites through `ensure_acl_allows`; the
//! history reads (`/event`, `/state`, `/state_ids`, `/event_auth`, `/backfill`,
//! `/get_missing_events`) and `/hierarchy` inside their read, through `acl_allows_in`.

use ruma::{RoomId, ServerName};
use rusqlite::Connection;
use serde_json::Value as JsonValue;

use super::checks;
use crate::service::{Error, Result, Services};
use crate::storage;

impl Services {
    /// Whether the current `m.room.server_acl` of `room_id` lets `server` in (no ACL: yes).
    pub async fn acl_allows(&self, server: &ServerName, room_id: &RoomId) -> Result<bool> {
        let (server, room) = (server.to_owned(), room_id.to_string());
        self.db
            .read(move |c| Ok(acl_allows_in(c, &server, &room)))
            .await?
    }

    /// `M_FORBIDDEN` when the room's server ACL denies `server`.
    pub async fn ensure_acl_allows(&self, server: &ServerName, room_id: &RoomId) -> Result<()> {
        if self.acl_allows(server, room_id).await? {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{server} is denied by the server ACL of {room_id}"
            )))
        }
    }
}

/// `acl_allows` inside a read: whether the current ACL of `room_id` (if any) lets `server` in.
pub(crate) fn acl_allows_in(c: &Connection, server: &ServerName, room_id: &str) -> Result<bool> {
    let Some(nid) = storage::state::current_state_event(c, room_id, "m.room.server_acl", "")?
    else {
        return Ok(true);
    };
    let Some(row) = storage::events::get_event_by_nid(c, nid)? else {
        return Ok(true);
    };
    Ok(serde_json::from_str::<JsonValue>(&row.json)
        .ok()
        .and_then(|event| event.get("content").cloned())
        .and_then(|content| serde_json::value::to_raw_value(&content).ok())
        .is_none_or(|content| checks::server_allowed(&content, server)))
}
