//! Room summaries: what a room looks like from outside (name, topic, avatar, canonical alias, how
//! many are joined, whether it is world-readable, guests may join, its join rule and room type),
//! as the public room directory and the space hierarchy show it. Read from the current state and
//! the current memberships only, never by replaying history; no access check happens here, so
//! callers decide who may see a summary.

use ruma::directory::PublicRoomsChunk;
use ruma::room::{JoinRule, JoinRuleSummary, RoomSummary, RoomType};
use ruma::{EventEncryptionAlgorithm, OwnedMxcUri, OwnedRoomAliasId, RoomId, RoomVersionId, UInt};
use rusqlite::Connection;
use serde_json::Value as JsonValue;

use super::super::{Error, Result, Services};
use crate::storage;

/// The state events a summary is made of (all with the empty state key).
const SUMMARY_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
];

impl Services {
    /// The summary of a room this server knows; `M_NOT_FOUND` for any other.
    pub async fn room_summary(&self, room_id: &RoomId) -> Result<RoomSummary> {
        let room = room_id.to_owned();
        self.db
            .read(move |c| read_summary(c, &room))
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {room_id} is not known to this server")))
    }
}

/// The summary of a room inside an open read, for callers that summarise many rooms in one read
/// (the directory, the hierarchy); `None` when the server does not know the room.
pub(crate) fn read_summary(
    conn: &Connection,
    room_id: &RoomId,
) -> storage::Result<Option<RoomSummary>> {
    let Some(room) = storage::events::get_room(conn, room_id.as_str())? else {
        return Ok(None);
    };
    let joined = storage::directory::joined_member_count(conn, room_id.as_str())?;
    let mut contents = Contents::default();
    for (kind, json) in
        storage::directory::current_state_json(conn, room_id.as_str(), SUMMARY_TYPES)?
    {
        let content = serde_json::from_str::<JsonValue>(&json)?
            .get_mut("content")
            .map(JsonValue::take)
            .unwrap_or_default();
        contents.set(&kind, content);
    }
    Ok(Some(contents.summary(
        room_id,
        &room.room_version,
        UInt::try_from(joined).unwrap_or_default(),
    )))
}

/// The summary as a room of the public room directory shows it.
pub(crate) fn directory_chunk(summary: RoomSummary) -> PublicRoomsChunk {
    summary.into()
}

/// The contents of a room's summary state events, by type.
#[derive(Default)]
struct Contents {
    create: JsonValue,
    name: JsonValue,
    topic: JsonValue,
    avatar: JsonValue,
    canonical_alias: JsonValue,
    join_rules: Option<JsonValue>,
    history_visibility: JsonValue,
    guest_access: JsonValue,
    encryption: JsonValue,
}

impl Contents {
    fn set(&mut self, kind: &str, content: JsonValue) {
        match kind {
            "m.room.create" => self.create = content,
            "m.room.name" => self.name = content,
            "m.room.topic" => self.topic = content,
            "m.room.avatar" => self.avatar = content,
            "m.room.canonical_alias" => self.canonical_alias = content,
            "m.room.join_rules" => self.join_rules = Some(content),
            "m.room.history_visibility" => self.history_visibility = content,
            "m.room.guest_access" => self.guest_access = content,
            "m.room.encryption" => self.encryption = content,
            _ => {}
        }
    }

    /// Builds the summary. Malformed content (state is authorised, but its content is not checked
    /// beyond that) leaves the field out rather than failing the whole summary.
    fn summary(&self, room_id: &RoomId, version: &str, joined: UInt) -> RoomSummary {
        // Without a join rules event the authorisation rules let nobody join but the creator.
        let join_rule = match &self.join_rules {
            Some(content) => serde_json::from_value::<JoinRule>(content.clone())
                .map(JoinRuleSummary::from)
                .unwrap_or(JoinRuleSummary::Invite),
            None => JoinRuleSummary::Invite,
        };
        let world_readable =
            text(&self.history_visibility, "history_visibility") == Some("world_readable");
        let guest_can_join = text(&self.guest_access, "guest_access") == Some("can_join");
        let mut summary = RoomSummary::new(
            room_id.to_owned(),
            join_rule,
            guest_can_join,
            joined,
            world_readable,
        );
        summary.name = text(&self.name, "name")
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        summary.topic = plain_topic(&self.topic);
        summary.avatar_url = text(&self.avatar, "url")
            .filter(|u| !u.is_empty())
            .map(OwnedMxcUri::from);
        summary.canonical_alias =
            text(&self.canonical_alias, "alias").and_then(|a| OwnedRoomAliasId::try_from(a).ok());
        summary.room_type = text(&self.create, "type").map(RoomType::from);
        summary.encryption =
            text(&self.encryption, "algorithm").map(EventEncryptionAlgorithm::from);
        summary.room_version = RoomVersionId::try_from(version).ok();
        summary
    }
}

fn text<'a>(content: &'a JsonValue, field: &str) -> Option<&'a str> {
    content.get(field)?.as_str()
}

/// The plain-text topic: the `text/plain` representation of the `m.topic` content block when there
/// is one, else the `topic` field (which the specification defines as the plain-text fallback).
fn plain_topic(content: &JsonValue) -> Option<String> {
    let block = content
        .pointer("/m.topic/m.text")
        .and_then(JsonValue::as_array)
        .and_then(|reps| {
            reps.iter().find(|rep| {
                rep.get("mimetype")
                    .and_then(JsonValue::as_str)
                    .is_none_or(|m| m == "text/plain")
            })
        })
        .and_then(|rep| text(rep, "body"));
    block
        .or_else(|| text(content, "topic"))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn room() -> ruma::OwnedRoomId {
        RoomId::parse("!r:x").unwrap()
    }

    #[test]
    fn a_summary_reads_every_field_from_its_state() {
        let mut contents = Contents::default();
        contents.set(
            "m.room.create",
            json!({"type": "m.space", "room_version": "11"}),
        );
        contents.set("m.room.name", json!({"name": "Garden"}));
        contents.set("m.room.topic", json!({"topic": "Plants"}));
        contents.set("m.room.avatar", json!({"url": "mxc://x/a"}));
        contents.set("m.room.canonical_alias", json!({"alias": "#garden:x"}));
        contents.set("m.room.join_rules", json!({"join_rule": "public"}));
        contents.set(
            "m.room.history_visibility",
            json!({"history_visibility": "world_readable"}),
        );
        contents.set("m.room.guest_access", json!({"guest_access": "can_join"}));
        contents.set(
            "m.room.encryption",
            json!({"algorithm": "m.megolm.v1.aes-sha2"}),
        );
        let summary = contents.summary(&room(), "11", UInt::from(3u32));
        let chunk = serde_json::to_value(directory_chunk(summary)).unwrap();
        assert_eq!(
            chunk,
            json!({
                "room_id": "!r:x", "name": "Garden", "topic": "Plants", "avatar_url": "mxc://x/a",
                "canonical_alias": "#garden:x", "num_joined_members": 3, "world_readable": true,
                "guest_can_join": true, "room_type": "m.space",
            })
        );
    }

    #[test]
    fn missing_or_malformed_state_leaves_fields_out() {
        let mut contents = Contents::default();
        contents.set("m.room.name", json!({"name": 7}));
        contents.set("m.room.canonical_alias", json!({"alias": "not an alias"}));
        let summary = contents.summary(&room(), "11", UInt::from(0u32));
        assert_eq!(summary.name, None);
        assert_eq!(summary.canonical_alias, None);
        assert_eq!(summary.join_rule, JoinRuleSummary::Invite);
        assert!(!summary.world_readable && !summary.guest_can_join);
        assert_eq!(summary.room_version, Some(RoomVersionId::V11));
    }

    #[test]
    fn the_plain_text_topic_is_preferred_from_the_topic_block() {
        let content = json!({
            "topic": "fallback",
            "m.topic": {"m.text": [
                {"mimetype": "text/html", "body": "<b>rich</b>"},
                {"body": "plain"},
            ]},
        });
        assert_eq!(plain_topic(&content).as_deref(), Some("plain"));
        assert_eq!(
            plain_topic(&json!({"topic": "only"})).as_deref(),
            Some("only")
        );
        assert_eq!(plain_topic(&json!({"topic": ""})), None);
    }
}
