//! The events a transaction carries, in the shape bridges want: the fields every event has as
//! ruma identifiers, the content as JSON with typed accessors. An event whose content ruma cannot
//! read still reaches the bridge, so a new or odd event type never blocks a transaction.

use ruma::events::room::member::MembershipState;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, UInt};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A room event (client format) from a transaction.
#[derive(Clone, Debug)]
pub struct MatrixEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    /// The event type, e.g. `m.room.message`.
    pub kind: String,
    /// Present for state events only.
    pub state_key: Option<String>,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub content: Value,
    /// The whole event as received.
    pub json: Value,
}

impl MatrixEvent {
    /// Reads a client-format event; `None` when a required field is missing or invalid.
    pub fn from_json(json: Value) -> Option<MatrixEvent> {
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
        let ts = json
            .get("origin_server_ts")
            .and_then(Value::as_u64)
            .and_then(|t| UInt::try_from(t).ok())
            .map(MilliSecondsSinceUnixEpoch)
            .unwrap_or_else(MilliSecondsSinceUnixEpoch::now);
        Some(MatrixEvent {
            event_id: text("event_id")?.try_into().ok()?,
            room_id: text("room_id")?.try_into().ok()?,
            sender: text("sender")?.try_into().ok()?,
            kind: text("type")?,
            state_key: text("state_key"),
            origin_server_ts: ts,
            content: json.get("content").cloned().unwrap_or(Value::Null),
            json,
        })
    }

    /// The content read as `T`.
    pub fn content_as<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.content.clone()).ok()
    }

    /// The content of an `m.room.message`.
    pub fn message(&self) -> Option<RoomMessageEventContent> {
        (self.kind == "m.room.message" && self.state_key.is_none())
            .then(|| self.content_as())
            .flatten()
    }

    /// The membership of an `m.room.member` event, with the user it is about.
    pub fn membership(&self) -> Option<(OwnedUserId, MembershipState)> {
        if self.kind != "m.room.member" {
            return None;
        }
        let user = self.state_key.as_deref()?.try_into().ok()?;
        let membership = serde_json::from_value(self.content.get("membership")?.clone()).ok()?;
        Some((user, membership))
    }

    /// Whether a member event invites into a direct chat (`is_direct`).
    pub fn is_direct_invite(&self) -> bool {
        matches!(self.membership(), Some((_, MembershipState::Invite)))
            && self.content.get("is_direct").and_then(Value::as_bool) == Some(true)
    }

    /// The event this one relates to (`m.relates_to.event_id`) and the relation type.
    pub fn relation(&self) -> Option<(OwnedEventId, String)> {
        let relates_to = self.content.get("m.relates_to")?;
        if let Some(reply) = relates_to.pointer("/m.in_reply_to/event_id") {
            return Some((reply.as_str()?.try_into().ok()?, "m.in_reply_to".into()));
        }
        let event_id = relates_to.get("event_id")?.as_str()?.try_into().ok()?;
        let rel_type = relates_to.get("rel_type")?.as_str()?.to_owned();
        Some((event_id, rel_type))
    }

    /// The target of an `m.room.redaction` (`content.redacts`, or the top-level `redacts` of
    /// room versions before 11).
    pub fn redacts(&self) -> Option<OwnedEventId> {
        if self.kind != "m.room.redaction" {
            return None;
        }
        let target = self
            .content
            .get("redacts")
            .or_else(|| self.json.get("redacts"))?;
        target.as_str()?.try_into().ok()
    }
}

/// An ephemeral event (`m.typing`, `m.receipt`, `m.presence`) from a transaction.
#[derive(Clone, Debug)]
pub struct EphemeralEvent {
    pub kind: String,
    /// The room of typing notices and receipts.
    pub room_id: Option<OwnedRoomId>,
    pub content: Value,
    pub json: Value,
}

impl EphemeralEvent {
    pub fn from_json(json: Value) -> Option<EphemeralEvent> {
        Some(EphemeralEvent {
            kind: json.get("type")?.as_str()?.to_owned(),
            room_id: json
                .get("room_id")
                .and_then(Value::as_str)
                .and_then(|r| r.try_into().ok()),
            content: json.get("content").cloned().unwrap_or(Value::Null),
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_message_and_its_reply_relation() {
        let event = MatrixEvent::from_json(json!({
            "event_id": "$a", "room_id": "!r:hs", "sender": "@u:hs", "type": "m.room.message",
            "origin_server_ts": 5,
            "content": {"msgtype": "m.text", "body": "hi",
                "m.relates_to": {"m.in_reply_to": {"event_id": "$b"}}}
        }))
        .unwrap();
        assert_eq!(event.message().unwrap().body(), "hi");
        assert_eq!(event.relation().unwrap().0.as_str(), "$b");
        assert_eq!(u64::from(event.origin_server_ts.0), 5);
    }

    #[test]
    fn reads_direct_invites_and_redactions() {
        let invite = MatrixEvent::from_json(json!({
            "event_id": "$a", "room_id": "!r:hs", "sender": "@u:hs", "type": "m.room.member",
            "state_key": "@bot:hs", "content": {"membership": "invite", "is_direct": true}
        }))
        .unwrap();
        assert!(invite.is_direct_invite());
        assert_eq!(invite.membership().unwrap().0.as_str(), "@bot:hs");
        let redaction = MatrixEvent::from_json(json!({
            "event_id": "$c", "room_id": "!r:hs", "sender": "@u:hs", "type": "m.room.redaction",
            "redacts": "$a", "content": {}
        }))
        .unwrap();
        assert_eq!(redaction.redacts().unwrap().as_str(), "$a");
    }

    #[test]
    fn refuses_events_without_ids() {
        assert!(MatrixEvent::from_json(json!({"type": "m.room.message"})).is_none());
    }
}
