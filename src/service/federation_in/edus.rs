//! EDUs of a received transaction: `m.typing` and `m.receipt` go to the typing and receipt
//! services as if the remote user had sent them locally, provided the user belongs to the origin,
//! the origin may take part in the room (a joined member, not refused by its server ACL) and the
//! user is joined. `m.presence` updates of the origin's users go to presence (in memory, shown to
//! local users sharing a room with them). `m.direct_to_device` messages go to local devices
//! (`service/to_device.rs`, once per message id); `m.device_list_update` and
//! `m.signing_key_update` record a change of the user's device list (`service/keys`). Anything
//! else — other EDU types, malformed
//! content, users of other servers — is ignored: an EDU has no answer, so refusals are only
//! logged.

use std::sync::Arc;

use ruma::events::receipt::ReceiptThread;
use ruma::{EventId, OwnedUserId, RoomId, ServerName, UserId};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::super::Services;
use crate::service::typing::MAX_TIMEOUT;

impl Services {
    /// Applies one EDU from `origin`, or ignores it; see the module docs.
    pub(super) async fn receive_edu(self: &Arc<Self>, origin: &ServerName, edu: &RawJsonValue) {
        let Ok(edu) = serde_json::from_str::<JsonValue>(edu.get()) else {
            return;
        };
        let content = edu.get("content").unwrap_or(&JsonValue::Null);
        match edu.get("edu_type").and_then(JsonValue::as_str) {
            Some("m.typing") => self.receive_typing(origin, content).await,
            Some("m.receipt") => self.receive_receipts(origin, content).await,
            Some("m.presence") => self.receive_presence(origin, content).await,
            Some("m.direct_to_device") => self.receive_direct_to_device(origin, content).await,
            Some("m.device_list_update" | "m.signing_key_update") => {
                self.receive_device_list_update(origin, content).await
            }
            _ => {}
        }
    }

    async fn receive_typing(self: &Arc<Self>, origin: &ServerName, content: &JsonValue) {
        let (Some(room_id), Some(user_id), Some(typing)) = (
            content
                .get("room_id")
                .and_then(JsonValue::as_str)
                .and_then(|r| RoomId::parse(r).ok()),
            user_of(origin, content.get("user_id")),
            content.get("typing").and_then(JsonValue::as_bool),
        ) else {
            return;
        };
        if !self.edu_room_allowed(origin, &room_id).await {
            return;
        }
        // A typing EDU carries no timeout; the origin sends it again while the user types.
        let timeout = typing.then_some(MAX_TIMEOUT);
        if let Err(e) = self.set_typing(&user_id, &room_id, &user_id, timeout).await {
            tracing::debug!(server.name = %origin, user.id = %user_id, room.id = %room_id, error = %e, "typing EDU ignored");
        }
    }

    async fn receive_receipts(self: &Arc<Self>, origin: &ServerName, content: &JsonValue) {
        let Some(rooms) = content.as_object() else {
            return;
        };
        for (room_id, by_type) in rooms {
            let Ok(room_id) = RoomId::parse(room_id) else {
                continue;
            };
            if !self.edu_room_allowed(origin, &room_id).await {
                continue;
            }
            // Only public read receipts travel between servers.
            let Some(users) = by_type.get("m.read").and_then(JsonValue::as_object) else {
                continue;
            };
            for (user_id, receipt) in users {
                let Some(user_id) = user_of(origin, Some(&JsonValue::String(user_id.clone())))
                else {
                    continue;
                };
                let Some(event_id) = receipt
                    .get("event_ids")
                    .and_then(JsonValue::as_array)
                    .and_then(|ids| ids.last())
                    .and_then(JsonValue::as_str)
                    .and_then(|id| EventId::parse(id).ok())
                else {
                    continue;
                };
                let thread = receipt
                    .get("data")
                    .and_then(|d| d.get("thread_id"))
                    .and_then(JsonValue::as_str);
                let Ok(thread) = ReceiptThread::try_from(thread) else {
                    continue;
                };
                if let Err(e) = self
                    .send_receipt(&user_id, &room_id, "m.read", &event_id, &thread)
                    .await
                {
                    tracing::debug!(server.name = %origin, user.id = %user_id, room.id = %room_id, error = %e, "receipt EDU ignored");
                }
            }
        }
    }

    async fn receive_presence(self: &Arc<Self>, origin: &ServerName, content: &JsonValue) {
        let Some(updates) = content.get("push").and_then(JsonValue::as_array) else {
            return;
        };
        for update in updates {
            let (Some(user_id), Some(state)) = (
                user_of(origin, update.get("user_id")),
                update.get("presence").and_then(JsonValue::as_str),
            ) else {
                continue;
            };
            let status_msg = update
                .get("status_msg")
                .and_then(JsonValue::as_str)
                .map(str::to_owned);
            if let Err(e) = self
                .receive_remote_presence(&user_id, state, status_msg)
                .await
            {
                tracing::debug!(server.name = %origin, user.id = %user_id, error = %e, "presence EDU ignored");
            }
        }
    }

    /// Whether the origin may send EDUs about the room (see `origin_may_send`).
    async fn edu_room_allowed(&self, origin: &ServerName, room_id: &RoomId) -> bool {
        match self.origin_may_send(origin, room_id).await {
            Ok(Ok(())) => true,
            Ok(Err(reason)) => {
                tracing::debug!(server.name = %origin, room.id = %room_id, %reason, "EDU ignored");
                false
            }
            Err(e) => {
                tracing::warn!(server.name = %origin, room.id = %room_id, error = %e, "cannot check an EDU's room");
                false
            }
        }
    }
}

/// The user id in `value` when it is a user of `origin`.
fn user_of(origin: &ServerName, value: Option<&JsonValue>) -> Option<OwnedUserId> {
    let user = UserId::parse(value?.as_str()?).ok()?;
    (user.server_name() == origin).then_some(user)
}
