//! Test fixtures for `room/`: a room kept entirely in memory, whose events are built, signed and
//! authorized by the real functions, so tests can grow a room (or several forks of it) and then
//! look at what auth, resolution or redaction make of it.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap};
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
    RoomVersionId, ServerName, UInt, UserId,
};
use serde_json::json;

use super::{
    AuthError, Pdu, PduTemplate, StateMap, auth_types_for, build_pdu, check_auth, rules_for,
};
use crate::federation::signing_key::SigningKey;

pub const SERVER: &str = "example.org";

pub fn user(name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:{SERVER}")).unwrap()
}

pub fn server() -> &'static ServerName {
    <&ServerName>::try_from(SERVER).unwrap()
}

pub fn signing_key() -> SigningKey {
    SigningKey::new("test", ed25519_dalek::SigningKey::from_bytes(&[42u8; 32])).unwrap()
}

pub fn keypair() -> Ed25519KeyPair {
    signing_key().to_keypair().unwrap()
}

/// The public key map `verify_event` needs to check this server's signatures.
pub fn public_keys() -> PublicKeyMap {
    let key = signing_key();
    let public = Base64::parse(key.public_key_base64()).unwrap();
    let mut map = PublicKeyMap::new();
    map.insert(
        SERVER.into(),
        [(key.key_id(), public)].into_iter().collect(),
    );
    map
}

pub fn ts(millis: u64) -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(UInt::new(millis).unwrap())
}

pub fn message(body: &str) -> PduTemplate {
    PduTemplate::message(
        TimelineEventType::RoomMessage,
        json!({ "msgtype": "m.text", "body": body }),
    )
}

pub fn member(target: &str, membership: &str) -> PduTemplate {
    PduTemplate::state(
        TimelineEventType::RoomMember,
        user(target).to_string(),
        json!({ "membership": membership }),
    )
}

pub fn room_name(name: &str) -> PduTemplate {
    PduTemplate::state(TimelineEventType::RoomName, "", json!({ "name": name }))
}

pub fn power_levels(content: serde_json::Value) -> PduTemplate {
    PduTemplate::state(TimelineEventType::RoomPowerLevels, "", content)
}

/// The power levels every test room starts with: state events need 50, messages 0.
pub fn default_power_levels(users: serde_json::Value) -> serde_json::Value {
    json!({
        "users": users, "users_default": 0, "events": {}, "events_default": 0,
        "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
    })
}

/// One line of the room's history: the state at its tip, the tip itself and its depth.
#[derive(Clone, Debug, Default)]
pub struct Branch {
    pub state: StateMap<OwnedEventId>,
    pub prev: Vec<OwnedEventId>,
    pub depth: u64,
}

pub struct TestRoom {
    pub rules: RoomVersionRules,
    pub room_id: OwnedRoomId,
    pub events: HashMap<OwnedEventId, Arc<Pdu>>,
    pub main: Branch,
    pub creation: Vec<Arc<Pdu>>,
    clock: u64,
    keypair: Ed25519KeyPair,
}

impl TestRoom {
    /// A room created by `creator`: create, the creator's join, power levels (the creator at 100
    /// up to v11; from v12 creators hold infinite power and are not listed) and invite-only join
    /// rules.
    pub fn new(version: RoomVersionId, creator: &str) -> TestRoom {
        let rules = rules_for(&version).unwrap();
        let create_content = if rules.authorization.use_room_create_sender {
            json!({ "room_version": version.as_str() })
        } else {
            json!({ "room_version": version.as_str(), "creator": user(creator) })
        };
        let template = PduTemplate::state(TimelineEventType::RoomCreate, "", create_content);
        let keypair = keypair();
        let given_room_id = RoomId::parse(format!("!room:{SERVER}")).unwrap();
        let room_id =
            (!rules.authorization.room_create_event_id_as_room_id).then_some(&*given_room_id);
        let create = build_pdu(
            &rules,
            room_id,
            template,
            &user(creator),
            vec![],
            vec![],
            1,
            ts(1_000),
            server(),
            &keypair,
        )
        .unwrap();
        let create = Arc::new(create);
        let mut main = Branch::default();
        main.state.insert(
            (StateEventType::RoomCreate, String::new()),
            create.event_id.clone(),
        );
        main.prev = vec![create.event_id.clone()];
        main.depth = 1;

        let mut room = TestRoom {
            room_id: create.room_id.clone(),
            events: HashMap::from([(create.event_id.clone(), create.clone())]),
            creation: vec![create],
            rules,
            main,
            clock: 1_000,
            keypair,
        };
        let users = if room.rules.authorization.explicitly_privilege_room_creators {
            json!({})
        } else {
            json!({ user(creator).as_str(): 100 })
        };
        let join_rules = PduTemplate::state(
            TimelineEventType::RoomJoinRules,
            "",
            json!({ "join_rule": "invite" }),
        );
        for template in [
            member(creator, "join"),
            power_levels(default_power_levels(users)),
            join_rules,
        ] {
            let pdu = room.send(creator, template);
            room.creation.push(pdu);
        }
        room
    }

    pub fn fetch_event(&self) -> impl Fn(&EventId) -> Option<Arc<Pdu>> + '_ {
        |id| self.events.get(id).cloned()
    }

    pub fn fetch_state<'a>(
        &'a self,
        state: &'a StateMap<OwnedEventId>,
    ) -> impl Fn(&StateEventType, &str) -> Option<Arc<Pdu>> + 'a {
        |kind, state_key| {
            state
                .get(&(kind.clone(), state_key.to_owned()))
                .and_then(|id| self.events.get(id).cloned())
        }
    }

    /// Builds (without authorizing) an event on top of `branch`, citing its state.
    pub fn build_on(
        &self,
        branch: &Branch,
        sender: &str,
        template: PduTemplate,
        millis: u64,
    ) -> Pdu {
        let content = serde_json::value::to_raw_value(&template.content).unwrap();
        let auth_types = auth_types_for(
            &self.rules,
            &template.kind,
            &user(sender),
            template.state_key.as_deref(),
            &content,
        )
        .unwrap();
        let auth_events = auth_types
            .iter()
            .filter_map(|key| branch.state.get(key).cloned())
            .collect();
        build_pdu(
            &self.rules,
            Some(&self.room_id),
            template,
            &user(sender),
            branch.prev.clone(),
            auth_events,
            branch.depth + 1,
            ts(millis),
            server(),
            &self.keypair,
        )
        .unwrap()
    }

    /// Builds an event on `branch`, authorizes it against the branch's state and, when allowed,
    /// makes it the branch's new tip.
    pub fn try_send_on(
        &mut self,
        branch: &mut Branch,
        sender: &str,
        template: PduTemplate,
        millis: u64,
    ) -> Result<Arc<Pdu>, AuthError> {
        let pdu = self.build_on(branch, sender, template, millis);
        check_auth(
            &self.rules,
            &pdu,
            self.fetch_event(),
            self.fetch_state(&branch.state),
        )?;
        let pdu = Arc::new(pdu);
        self.events.insert(pdu.event_id.clone(), pdu.clone());
        if let Some(key) = pdu.state_map_key() {
            branch.state.insert(key, pdu.event_id.clone());
        }
        branch.prev = vec![pdu.event_id.clone()];
        branch.depth += 1;
        Ok(pdu)
    }

    pub fn send_on(
        &mut self,
        branch: &mut Branch,
        sender: &str,
        template: PduTemplate,
        millis: u64,
    ) -> Arc<Pdu> {
        self.try_send_on(branch, sender, template, millis).unwrap()
    }

    /// Sends on the main line of history, one second after the previous event.
    pub fn try_send(&mut self, sender: &str, template: PduTemplate) -> Result<Arc<Pdu>, AuthError> {
        self.clock += 1_000;
        let mut main = std::mem::take(&mut self.main);
        let result = self.try_send_on(&mut main, sender, template, self.clock);
        self.main = main;
        result
    }

    pub fn send(&mut self, sender: &str, template: PduTemplate) -> Arc<Pdu> {
        self.try_send(sender, template).unwrap()
    }

    /// Lets `name` in: invited by `inviter`, then joining.
    pub fn invite_and_join(&mut self, inviter: &str, name: &str) {
        self.send(inviter, member(name, "invite"));
        self.send(name, member(name, "join"));
    }

    /// The content of the event at `(kind, state_key)` in `state`.
    pub fn content_at(
        &self,
        state: &StateMap<OwnedEventId>,
        kind: StateEventType,
        state_key: &str,
    ) -> serde_json::Value {
        let id = &state[&(kind, state_key.to_owned())];
        serde_json::from_str(self.events[id].content.get()).unwrap()
    }
}
