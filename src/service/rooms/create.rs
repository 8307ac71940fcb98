//! `createRoom`: the create event, the creator's join, power levels, join rules, history
//! visibility and guest access from the preset, `initial_state`, name, topic, alias and invites.

use std::sync::Arc;

use ruma::events::TimelineEventType;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId};
use serde_json::{Map, Value as JsonValue, json};

use super::append::{AppendOptions, pdu_error};
use super::super::{Error, Result, Services, UserSession, random_string};
use crate::room::{self, PduTemplate};
use crate::storage::{self, now_ms};

/// What a client asked `createRoom` for.
#[derive(Default)]
pub struct CreateRoom {
    pub preset: Option<String>,
    pub public: bool,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub initial_state: Vec<(String, String, JsonValue)>,
    pub power_level_content_override: Option<Map<String, JsonValue>>,
    pub creation_content: Option<Map<String, JsonValue>>,
    pub is_direct: bool,
    pub room_version: Option<RoomVersionId>,
}

impl Services {
    pub async fn create_room(&self, session: &UserSession, request: CreateRoom) -> Result<OwnedRoomId> {
        let creator = &session.user_id;
        let version = request.room_version.clone().unwrap_or_else(|| self.config.rooms.default_room_version.clone());
        let rules = room::rules_for(&version).ok_or_else(|| {
            Error::UnsupportedRoomVersion(format!(
                "room version {version} is not supported; use one of {}",
                room::SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let preset = match request.preset.as_deref() {
            Some(p @ ("private_chat" | "trusted_private_chat" | "public_chat")) => p.to_owned(),
            Some(other) => return Err(Error::InvalidParam(format!("unknown preset {other:?}"))),
            None if request.public => "public_chat".into(),
            None => "private_chat".into(),
        };
        let alias = match &request.room_alias_name {
            Some(local) => Some(self.check_new_alias(local).await?),
            None => None,
        };

        let mut create_content = request.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), json!(version.as_str()));
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), json!(creator));
        }
        let template = PduTemplate::state(TimelineEventType::RoomCreate, "", JsonValue::Object(create_content));
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            Some(RoomId::parse(format!("!{}:{}", random_string(18), self.server_name()))
                .map_err(|e| Error::Internal(e.to_string()))?)
        };
        let keypair = self.signing_key.keypair().map_err(|e| Error::Internal(e.to_string()))?;
        let create = room::build_pdu(
            &rules,
            room_id.as_deref(),
            template,
            creator,
            Vec::new(),
            Vec::new(),
            1,
            MilliSecondsSinceUnixEpoch::now(),
            self.server_name(),
            &keypair,
        )
        .map_err(pdu_error)?;
        let room_id = create.room_id.clone();
        let create = Arc::new(create);
        {
            let _lock = self.room_locks.lock(&room_id).await;
            let (room, version_text, creator_text) =
                (room_id.to_string(), version.to_string(), creator.to_string());
            self.db
                .write("insert_room", move |c| {
                    storage::events::insert_room_txn(c, &room, &version_text, &creator_text, now_ms())
                })
                .await?;
            self.persist_pdu(create, None, None, None).await?;
        }

        for template in self.initial_events(session, &rules, &preset, &request, alias.as_ref()).await? {
            self.append_event(&room_id, creator, template, AppendOptions::default()).await?;
        }
        if let Some(alias) = alias {
            self.put_alias(&alias, &room_id, creator).await?;
        }
        for invitee in &request.invite {
            self.invite(session, &room_id, invitee, None, request.is_direct).await?;
        }
        if request.public {
            let room = room_id.to_string();
            self.db
                .write("publish_room", move |c| storage::events::set_room_published_txn(c, &room, true))
                .await?;
        }
        tracing::info!(room.id = %room_id, user.id = %creator, version = %version, "created room");
        Ok(room_id)
    }

    /// The events after `m.room.create`, in the order the specification gives.
    async fn initial_events(
        &self,
        session: &UserSession,
        rules: &ruma::room_version_rules::RoomVersionRules,
        preset: &str,
        request: &CreateRoom,
        alias: Option<&OwnedRoomAliasId>,
    ) -> Result<Vec<PduTemplate>> {
        let creator = &session.user_id;
        let mut events = vec![PduTemplate::state(
            TimelineEventType::RoomMember,
            creator.as_str(),
            self.member_content("join", creator, None, false).await?,
        )];

        let mut users = Map::new();
        if !rules.authorization.explicitly_privilege_room_creators {
            users.insert(creator.to_string(), json!(100));
        }
        if preset == "trusted_private_chat" {
            for invitee in &request.invite {
                users.insert(invitee.to_string(), json!(100));
            }
        }
        let mut power_levels = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 0,
        });
        if let (Some(overrides), Some(target)) = (&request.power_level_content_override, power_levels.as_object_mut()) {
            for (key, value) in overrides {
                target.insert(key.clone(), value.clone());
            }
        }
        events.push(PduTemplate::state(TimelineEventType::RoomPowerLevels, "", power_levels));
        if let Some(alias) = alias {
            events.push(PduTemplate::state(TimelineEventType::RoomCanonicalAlias, "", json!({ "alias": alias })));
        }
        let (join_rule, guest_access) = match preset {
            "public_chat" => ("public", "forbidden"),
            _ => ("invite", "can_join"),
        };
        let preset_state = [
            (TimelineEventType::RoomJoinRules, json!({ "join_rule": join_rule })),
            (TimelineEventType::RoomHistoryVisibility, json!({ "history_visibility": "shared" })),
            (TimelineEventType::RoomGuestAccess, json!({ "guest_access": guest_access })),
        ];
        for (kind, content) in preset_state {
            let overridden = request
                .initial_state
                .iter()
                .any(|(k, key, _)| *k == kind.to_string() && key.is_empty());
            if !overridden {
                events.push(PduTemplate::state(kind, "", content));
            }
        }
        for (kind, key, content) in &request.initial_state {
            if kind == "m.room.create" || kind == "m.room.member" || kind == "m.room.power_levels" {
                return Err(Error::InvalidParam(format!("initial_state may not set {kind}")));
            }
            events.push(PduTemplate::state(kind.as_str().into(), key.as_str(), content.clone()));
        }
        if let Some(name) = &request.name {
            events.push(PduTemplate::state(TimelineEventType::RoomName, "", json!({ "name": name })));
        }
        if let Some(topic) = &request.topic {
            events.push(PduTemplate::state(TimelineEventType::RoomTopic, "", json!({ "topic": topic })));
        }
        Ok(events)
    }
}
