//! The room's `m.room.server_acl` as it applies to a server's requests about the room: every
//! Server-Server endpoint naming a room refuses a server the room's current ACL denies (the
//! specification's "Server Access Control Lists"). `/send` PDUs and EDUs check it per room
//! (`origin_may_send`); the join and leave handshakes check it through `ensure_acl_allows`.

use ruma::{RoomId, ServerName};
use serde_json::Value as JsonValue;

use super::checks;
use crate::service::{Error, Result, Services};
use crate::storage;

impl Services {
    /// Whether the current `m.room.server_acl` of `room_id` lets `server` in (no ACL: yes).
    pub async fn acl_allows(&self, server: &ServerName, room_id: &RoomId) -> Result<bool> {
        let room = room_id.to_string();
        let acl = self
            .db
            .read(move |c| {
                Ok(
                    storage::state::current_state_event(c, &room, "m.room.server_acl", "")?
                        .map(|nid| storage::events::get_event_by_nid(c, nid))
                        .transpose()?
                        .flatten()
                        .map(|row| row.json),
                )
            })
            .await?;
        Ok(match acl {
            Some(json) => match serde_json::from_str::<JsonValue>(&json)
                .ok()
                .and_then(|event| event.get("content").cloned())
                .and_then(|content| serde_json::value::to_raw_value(&content).ok())
            {
                Some(content) => checks::server_allowed(&content, server),
                None => true,
            },
            None => true,
        })
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
