//! Room upgrades (`/rooms/{roomId}/upgrade`): a new room of the new version that carries the old
//! room's state over, the old room's aliases and directory listing moved to it, a tombstone in
//! the old room pointing to it, and the old room's power levels raised so that only moderators
//! can still speak there.

use ruma::events::{StateEventType, TimelineEventType};
use ruma::{OwnedRoomId, RoomId, RoomVersionId};
use serde_json::{Map, Value as JsonValue, json};

use super::super::{Error, Result, Services, UserSession};
use super::CreateRoom;
use crate::room::{self, PduTemplate};
use crate::storage;

/// State the new room takes over from the old one, as other servers carry it.
const CARRIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.canonical_alias",
    "m.space.parent",
];

impl Services {
    pub async fn upgrade_room(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        new_version: RoomVersionId,
    ) -> Result<OwnedRoomId> {
        let new_rules = room::rules_for(&new_version).ok_or_else(|| {
            Error::UnsupportedRoomVersion(format!("room version {new_version} is not supported"))
        })?;
        self.require_joined(room_id, &session.user_id).await?;
        let levels = self.power_levels(room_id).await?;
        let needed = levels
            .pointer("/events/m.room.tombstone")
            .or_else(|| levels.get("state_default"))
            .and_then(JsonValue::as_i64)
            .unwrap_or(50);
        if self.user_power(room_id, &levels, &session.user_id).await? < needed {
            return Err(Error::Forbidden(
                "you do not have the power to upgrade this room".into(),
            ));
        }

        let keys: Vec<(StateEventType, String)> = CARRIED_STATE
            .iter()
            .map(|kind| ((*kind).into(), String::new()))
            .chain([(StateEventType::RoomCreate, String::new())])
            .collect();
        let old_state = self.current_state_events(room_id, keys).await?;
        let create = old_state
            .get(&(StateEventType::RoomCreate, String::new()))
            .ok_or_else(|| Error::Internal(format!("{room_id} has no create event")))?;
        let old_create: JsonValue = serde_json::from_str(create.content.get()).unwrap_or_default();
        let last_event = self.latest_event_id(room_id).await?;

        let mut creation_content = Map::new();
        if let Some(kind) = old_create.get("type") {
            creation_content.insert("type".into(), kind.clone());
        }
        creation_content.insert(
            "predecessor".into(),
            json!({ "room_id": room_id, "event_id": last_event }),
        );
        let initial_state = CARRIED_STATE
            .iter()
            .filter_map(|kind| {
                let pdu = old_state.get(&((*kind).into(), String::new()))?;
                let content: JsonValue = serde_json::from_str(pdu.content.get()).ok()?;
                Some(((*kind).to_owned(), String::new(), content))
            })
            .collect();
        let mut new_levels = levels.as_object().cloned().unwrap_or_default();
        let users = new_levels.entry("users").or_insert_with(|| json!({}));
        if let Some(users) = users.as_object_mut() {
            if new_rules.authorization.explicitly_privilege_room_creators {
                // From v12 the creator's power comes from creating the room, not from `users`.
                users.remove(session.user_id.as_str());
            } else {
                let current = users
                    .get(session.user_id.as_str())
                    .and_then(JsonValue::as_i64)
                    .unwrap_or(0);
                users.insert(session.user_id.to_string(), json!(current.max(100)));
            }
        }
        let new_room = self
            .create_room(
                session,
                CreateRoom {
                    preset: Some("private_chat".into()),
                    initial_state,
                    power_level_content_override: Some(new_levels),
                    creation_content: Some(creation_content),
                    room_version: Some(new_version),
                    ..CreateRoom::default()
                },
            )
            .await?;

        let (old, new) = (room_id.to_string(), new_room.to_string());
        let published = self
            .db
            .write("move_aliases", move |c| {
                storage::rooms::move_aliases_txn(c, &old, &new)?;
                let published = storage::events::get_room(c, &old)?.is_some_and(|r| r.published);
                if published {
                    storage::events::set_room_published_txn(c, &old, false)?;
                    storage::events::set_room_published_txn(c, &new, true)?;
                }
                Ok(published)
            })
            .await?;

        let tombstone =
            json!({ "body": "This room has been replaced", "replacement_room": new_room });
        let options = super::append::AppendOptions::default();
        self.append_event(
            room_id,
            &session.user_id,
            PduTemplate::state(TimelineEventType::RoomTombstone, "", tombstone),
            options,
        )
        .await?;
        let mut restricted = levels.as_object().cloned().unwrap_or_default();
        let users_default = restricted
            .get("users_default")
            .and_then(JsonValue::as_i64)
            .unwrap_or(0);
        let floor = 50.max(users_default + 1);
        for key in ["events_default", "invite"] {
            let current = restricted.get(key).and_then(JsonValue::as_i64).unwrap_or(0);
            restricted.insert(key.into(), json!(current.max(floor)));
        }
        let template = PduTemplate::state(
            TimelineEventType::RoomPowerLevels,
            "",
            JsonValue::Object(restricted),
        );
        self.append_event(
            room_id,
            &session.user_id,
            template,
            super::append::AppendOptions::default(),
        )
        .await?;
        tracing::info!(room.id = %room_id, replacement = %new_room, published, "upgraded room");
        Ok(new_room)
    }

    /// The room's latest event id, for `predecessor.event_id`.
    async fn latest_event_id(&self, room_id: &RoomId) -> Result<String> {
        let room = room_id.to_string();
        let rows = self
            .db
            .read(move |c| storage::events::forward_extremities(c, &room))
            .await?;
        rows.last()
            .map(|r| r.event_id.clone())
            .ok_or_else(|| Error::NotFound(format!("room {room_id} has no events")))
    }
}
