//! Rooms as the bridge acts in them: portal creation, messages and other events as the bot or a
//! ghost (with the remote time), state, reactions, redactions, read receipts and typing.

use std::time::Duration;

use reqwest::Method;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedMxcUri, OwnedRoomId, OwnedUserId,
    RoomAliasId, RoomId, UserId,
};
use serde::Serialize;
use serde_json::json;

use super::{Client, encode, event_id_of};
use crate::Error;

/// A room for a remote chat, created by the bot.
#[derive(Clone, Debug, Default)]
pub struct PortalRoom {
    pub name: Option<String>,
    pub topic: Option<String>,
    pub avatar_url: Option<OwnedMxcUri>,
    /// Matrix users invited at creation (staff, or the ghost of a direct chat).
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    /// The localpart of an alias to bind (it should fall in the registration's alias namespace).
    /// Creating a portal whose alias exists answers the room it names, so a portal keyed by its
    /// alias is made once even when the bridge dies before recording it.
    pub alias_localpart: Option<String>,
    /// The `m.bridge` state event describing the bridged chat.
    pub bridge_info: Option<BridgeInfo>,
}

/// What the `m.bridge` (and legacy `uk.half-shot.bridge`) state event says of a portal.
#[derive(Clone, Debug)]
pub struct BridgeInfo {
    /// The network's id, e.g. `whatsapp`.
    pub protocol_id: String,
    pub protocol_name: String,
    /// The remote chat's id.
    pub channel_id: String,
    pub channel_name: Option<String>,
}

impl Client {
    /// Sends a message as `sender`, at the remote time `ts` when given.
    pub async fn send_message(
        &self,
        sender: &UserId,
        room: &RoomId,
        content: &RoomMessageEventContent,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, Error> {
        self.send_event(sender, room, "m.room.message", content, ts)
            .await
    }

    /// Sends an `m.notice` as the bot (command answers, delivery failures).
    pub async fn send_notice(&self, room: &RoomId, text: &str) -> Result<OwnedEventId, Error> {
        let content = RoomMessageEventContent::notice_plain(text);
        self.send_message(self.bot(), room, &content, None).await
    }

    /// Sends any room event as `sender` (`PUT /rooms/{roomId}/send/{type}/{txnId}`).
    pub async fn send_event(
        &self,
        sender: &UserId,
        room: &RoomId,
        event_type: &str,
        content: &impl Serialize,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, Error> {
        let txn_id = self.next_txn_id();
        self.send_event_with_txn(sender, room, event_type, content, ts, &txn_id)
            .await
    }

    /// Like [`Client::send_event`], with a transaction id of the caller's. The homeserver keeps
    /// one event per sender (and the appservice's device) and transaction id, so a send repeated
    /// with the same id — after a crash, from an id derived from the remote message's — answers
    /// the event stored the first time instead of storing a second.
    pub async fn send_event_with_txn(
        &self,
        sender: &UserId,
        room: &RoomId,
        event_type: &str,
        content: &impl Serialize,
        ts: Option<MilliSecondsSinceUnixEpoch>,
        txn_id: &str,
    ) -> Result<OwnedEventId, Error> {
        let content = serde_json::to_value(content).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{}",
            encode(room.as_str()),
            encode(event_type),
            encode(txn_id)
        );
        let query: Vec<(&str, String)> = ts
            .map(|ts| vec![("ts", u64::from(ts.0).to_string())])
            .unwrap_or_default();
        let answer = self
            .call(Method::PUT, &path, Some(sender), &query, Some(&content))
            .await?;
        event_id_of(&answer)
    }

    /// Sets a state event as `sender`.
    pub async fn send_state(
        &self,
        sender: &UserId,
        room: &RoomId,
        event_type: &str,
        state_key: &str,
        content: &impl Serialize,
    ) -> Result<OwnedEventId, Error> {
        let content = serde_json::to_value(content).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            encode(room.as_str()),
            encode(event_type),
            encode(state_key)
        );
        let answer = self
            .call(Method::PUT, &path, Some(sender), &[], Some(&content))
            .await?;
        event_id_of(&answer)
    }

    /// Reacts to `event` with `key` (an `m.annotation`) as `sender`.
    pub async fn react(
        &self,
        sender: &UserId,
        room: &RoomId,
        event: &EventId,
        key: &str,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, Error> {
        let content = json!({
            "m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": key}
        });
        self.send_event(sender, room, "m.reaction", &content, ts)
            .await
    }

    /// Redacts `event` as `sender`.
    pub async fn redact(
        &self,
        sender: &UserId,
        room: &RoomId,
        event: &EventId,
        reason: Option<&str>,
    ) -> Result<OwnedEventId, Error> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/redact/{}/{}",
            encode(room.as_str()),
            encode(event.as_str()),
            encode(&self.next_txn_id())
        );
        let body = match reason {
            Some(reason) => json!({"reason": reason}),
            None => json!({}),
        };
        let answer = self
            .call(Method::PUT, &path, Some(sender), &[], Some(&body))
            .await?;
        event_id_of(&answer)
    }

    /// One event of `room` as `viewer` sees it (`GET /rooms/{roomId}/event/{eventId}`).
    pub async fn event(
        &self,
        viewer: &UserId,
        room: &RoomId,
        event: &EventId,
    ) -> Result<serde_json::Value, Error> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(room.as_str()),
            encode(event.as_str())
        );
        self.call(Method::GET, &path, Some(viewer), &[], None).await
    }

    /// A public read receipt (`m.read`) by `user` up to `event`.
    pub async fn read_receipt(
        &self,
        user: &UserId,
        room: &RoomId,
        event: &EventId,
    ) -> Result<(), Error> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
            encode(room.as_str()),
            encode(event.as_str())
        );
        self.call(Method::POST, &path, Some(user), &[], Some(&json!({})))
            .await?;
        Ok(())
    }

    /// Starts (for `timeout`) or stops `user`'s typing notice.
    pub async fn typing(
        &self,
        user: &UserId,
        room: &RoomId,
        typing: Option<Duration>,
    ) -> Result<(), Error> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/typing/{}",
            encode(room.as_str()),
            encode(user.as_str())
        );
        let body = match typing {
            Some(timeout) => json!({"typing": true, "timeout": timeout.as_millis() as u64}),
            None => json!({"typing": false}),
        };
        self.call(Method::PUT, &path, Some(user), &[], Some(&body))
            .await?;
        Ok(())
    }

    /// Creates a portal room as the bot: private, the bot at power 100, with the `m.bridge`
    /// state when given. Ghosts join later through [`Client::ensure_joined`].
    pub async fn create_portal_room(&self, portal: &PortalRoom) -> Result<OwnedRoomId, Error> {
        let mut initial_state = Vec::new();
        if let Some(info) = &portal.bridge_info {
            let content = json!({
                "bridgebot": self.bot(),
                "protocol": {"id": info.protocol_id, "displayname": info.protocol_name},
                "channel": {"id": info.channel_id, "displayname": info.channel_name},
            });
            let state_key = format!("{}/{}", info.protocol_id, info.channel_id);
            for event_type in ["m.bridge", "uk.half-shot.bridge"] {
                initial_state
                    .push(json!({"type": event_type, "state_key": state_key, "content": content}));
            }
        }
        if let Some(avatar) = &portal.avatar_url {
            initial_state.push(
                json!({"type": "m.room.avatar", "state_key": "", "content": {"url": avatar}}),
            );
        }
        let mut body = json!({
            "preset": "private_chat",
            "visibility": "private",
            "invite": portal.invite,
            "is_direct": portal.is_direct,
            "initial_state": initial_state,
            "power_level_content_override": {"users": {self.bot().as_str(): 100}},
        });
        if let Some(name) = &portal.name {
            body["name"] = json!(name);
        }
        if let Some(topic) = &portal.topic {
            body["topic"] = json!(topic);
        }
        if let Some(alias) = &portal.alias_localpart {
            body["room_alias_name"] = json!(alias);
        }
        let answer = self
            .call(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                None,
                &[],
                Some(&body),
            )
            .await;
        let room: OwnedRoomId = match (answer, &portal.alias_localpart) {
            (Ok(answer), _) => answer["room_id"]
                .as_str()
                .and_then(|r| r.try_into().ok())
                .ok_or_else(|| Error::Invalid("createRoom answered no room_id".into()))?,
            // The alias is the portal's already: a run that stopped before recording the room
            // created it. The homeserver binds the alias with the room, so that room is whole.
            (Err(e), Some(alias)) if e.errcode() == Some("M_ROOM_IN_USE") => {
                let alias = RoomAliasId::parse(format!("#{alias}:{}", self.inner.server_name))
                    .map_err(|e| Error::Invalid(format!("portal alias: {e}")))?;
                self.resolve_alias(&alias).await?
            }
            (Err(e), _) => return Err(e),
        };
        if let Ok(mut joined) = self.inner.joined.lock() {
            joined.insert((self.inner.bot.clone(), room.clone()));
        }
        Ok(room)
    }
}
