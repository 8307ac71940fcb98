//! `createRoom`: the create event, the creator's join, power levels, join rules, history
//! visibility and guest access from the preset, `initial_state`, name, topic, alias and invites.

use std::sync::Arc;

use ruma::events::TimelineEventType;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId,
};
use serde_json::{Map, Value as JsonValue, json};

use std::collections::HashMap;

use ruma::events::StateEventType;

use super::super::{Error, Result, Services, UserSession, random_string};
use super::append::{PendingWrite, pdu_error};
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
    pub async fn create_room(
        &self,
        session: &UserSession,
        request: CreateRoom,
    ) -> Result<OwnedRoomId> {
        let creator = &session.user_id;
        let version = request
            .room_version
            .clone()
            .unwrap_or_else(|| self.config.rooms.default_room_version.clone());
        let rules = room::rules_for(&version).ok_or_else(|| {
            Error::UnsupportedRoomVersion(format!(
                "room version {version} is not supported; use one of {}",
                room::SUPPORTED
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
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
        // Invitees in an appservice's namespace that do not exist yet are asked of it first, as
        // for `/invite`, so that a bridge can create its ghost before the invite reaches it.
        for invitee in &request.invite {
            self.ensure_appservice_user(invitee).await?;
        }

        let mut create_content = request.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), json!(version.as_str()));
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), json!(creator));
        }
        if rules.authorization.additional_room_creators
            && preset == "trusted_private_chat"
            && !request.invite.is_empty()
        {
            // From v12, trusted private chats make the invitees creators too, instead of giving
            // them power level 100.
            create_content.insert("additional_creators".into(), json!(request.invite));
        }
        let template = PduTemplate::state(
            TimelineEventType::RoomCreate,
            "",
            JsonValue::Object(create_content),
        );
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            Some(
                RoomId::parse(format!("!{}:{}", random_string(18), self.server_name()))
                    .map_err(|e| Error::Internal(e.to_string()))?,
            )
        };
        let keypair = self.signing_key.keypair();
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
            keypair,
        )
        .map_err(pdu_error)?;
        let room_id = create.room_id.clone();

        // Every initial event is built and authorised in memory first, so a request whose
        // initial state cannot be sent writes nothing.
        let create = Arc::new(create);
        let mut state =
            HashMap::from([((StateEventType::RoomCreate, String::new()), create.clone())]);
        let mut events = vec![create];
        let mut templates = self
            .initial_events(session, &rules, &preset, &request, alias.as_ref())
            .await?;
        for invitee in &request.invite {
            let content = self
                .member_content("invite", invitee, None, request.is_direct)
                .await?;
            templates.push(PduTemplate::state(
                TimelineEventType::RoomMember,
                invitee.as_str(),
                content,
            ));
        }
        for template in templates {
            let previous = events
                .last()
                .map(|p| p.event_id.clone())
                .into_iter()
                .collect();
            let depth = events.len() as u64 + 1;
            let pdu = self
                .build_authorised(&rules, &room_id, creator, template, previous, depth, &state)?
                .map_err(|reason| {
                    Error::InvalidRoomState(format!("the initial state cannot be sent: {reason}"))
                })?;
            let pdu = Arc::new(pdu);
            if let Some(key) = &pdu.state_key {
                state.insert((pdu.kind.to_string().into(), key.clone()), pdu.clone());
            }
            events.push(pdu);
        }
        let announced = events.clone();
        let mut writes = events
            .into_iter()
            .map(|pdu| PendingWrite::new(pdu, None, None))
            .collect::<Result<Vec<_>>>()?;
        let (room, version_text, creator_text) = (
            room_id.to_string(),
            version.to_string(),
            creator.to_string(),
        );
        let alias_text = alias.as_ref().map(|a| a.to_string());
        let public = request.public;
        let _lock = self.room_locks.lock(&room_id).await;
        let positions = self
            .db
            .write("create_room", move |c| {
                storage::events::insert_room_txn(c, &room, &version_text, &creator_text, now_ms())?;
                let mut state_group = None;
                let mut positions = Vec::with_capacity(writes.len());
                for write in &mut writes {
                    let (nid, after) = write.persist_txn(c, state_group)?;
                    state_group = after;
                    positions.push(nid);
                }
                if let Some(alias) = &alias_text
                    && !storage::rooms::insert_alias_txn(c, alias, &room, &creator_text)?
                {
                    return Err(storage::StorageError::Aborted(format!(
                        "the alias {alias} was taken meanwhile"
                    )));
                }
                if public {
                    storage::events::set_room_published_txn(c, &room, true)?;
                }
                Ok(positions)
            })
            .await
            .map_err(|e| match e {
                storage::StorageError::Aborted(message) => Error::RoomInUse(message),
                other => other.into(),
            })?;
        for (pdu, position) in announced.iter().zip(positions) {
            self.announce(pdu, position);
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
        if preset == "trusted_private_chat" && !rules.authorization.additional_room_creators {
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
        if let (Some(overrides), Some(target)) = (
            &request.power_level_content_override,
            power_levels.as_object_mut(),
        ) {
            for (key, value) in overrides {
                target.insert(key.clone(), value.clone());
            }
        }
        events.push(PduTemplate::state(
            TimelineEventType::RoomPowerLevels,
            "",
            power_levels,
        ));
        if let Some(alias) = alias {
            events.push(PduTemplate::state(
                TimelineEventType::RoomCanonicalAlias,
                "",
                json!({ "alias": alias }),
            ));
        }
        let (join_rule, guest_access) = match preset {
            "public_chat" => ("public", "forbidden"),
            _ => ("invite", "can_join"),
        };
        let preset_state = [
            (
                TimelineEventType::RoomJoinRules,
                json!({ "join_rule": join_rule }),
            ),
            (
                TimelineEventType::RoomHistoryVisibility,
                json!({ "history_visibility": "shared" }),
            ),
            (
                TimelineEventType::RoomGuestAccess,
                json!({ "guest_access": guest_access }),
            ),
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
                return Err(Error::InvalidParam(format!(
                    "initial_state may not set {kind}"
                )));
            }
            events.push(PduTemplate::state(
                kind.as_str().into(),
                key.as_str(),
                content.clone(),
            ));
        }
        if let Some(name) = &request.name {
            events.push(PduTemplate::state(
                TimelineEventType::RoomName,
                "",
                json!({ "name": name }),
            ));
        }
        if let Some(topic) = &request.topic {
            let content = json!({ "topic": topic, "m.topic": { "m.text": [{ "body": topic, "mimetype": "text/plain" }] } });
            events.push(PduTemplate::state(
                TimelineEventType::RoomTopic,
                "",
                content,
            ));
        }
        Ok(events)
    }
}
