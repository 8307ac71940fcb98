//! Users of other servers joining and leaving rooms of this server: the resident side of the
//! `make_join`/`send_join` and `make_leave`/`send_leave` handshakes.
//!
//! `make_*` answers a template: the member event built on the room's current head and
//! authorised as if it were sent now (so an invite-only room without an invite, or a ban, is
//! refused here already), without hashes or signatures, which the user's server adds. A join to
//! a restricted room by a member of an allowed room names a local member who may invite in
//! `join_authorised_via_users_server`; this server's signature then vouches for it. `send_*`
//! takes the event back and checks it: format, event id (its reference hash), sender of the
//! origin server, membership and state key, the origin's signature (keys through
//! `Federation::verify_key`) and content hash; then this server signs it too, and
//! `append_external_pdu` authorises it against the room and persists it. A join is answered
//! with the state before it and the auth chain of that state and the event.

use std::sync::Arc;

use ruma::canonical_json::CanonicalJsonValue;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{PublicKeyMap, Verified};
use ruma::{
    CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch, OwnedServerSigningKeyId, OwnedUserId,
    RoomId, RoomVersionId, ServerName, UserId,
};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::super::{Error, Result, Services};
use super::append::membership_of;
use crate::room::{self, Pdu, PduTemplate};
use crate::storage;

/// The answer to a `send_join`: what the joining server needs to take part in the room.
pub struct JoinedRoom {
    /// The join event with this server's signature added.
    pub event: CanonicalJsonObject,
    /// The room's state before the join, as PDUs in federation format.
    pub state: Vec<Box<RawJsonValue>>,
    /// The auth chain of the state and of the join event.
    pub auth_chain: Vec<Box<RawJsonValue>>,
    /// The servers with joined members, the joining one included.
    pub servers_in_room: Vec<String>,
}

impl Services {
    /// `make_join` / `make_leave`: a member event template for `user_id` (a user of `origin`)
    /// setting `membership` in a room of this server, with the room's version. For a join,
    /// `versions` are those the user's server supports.
    pub async fn make_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
        versions: Option<&[RoomVersionId]>,
    ) -> Result<(RoomVersionId, CanonicalJsonObject)> {
        if user_id.server_name() != origin {
            return Err(Error::Forbidden(format!(
                "{user_id} is not a user of {origin}"
            )));
        }
        let (version, _) = self.room_rules(room_id).await?;
        self.ensure_acl_allows(origin, room_id).await?;
        if let Some(versions) = versions
            && !versions.contains(&version)
        {
            return Err(Error::IncompatibleRoomVersion(version));
        }
        let mut content = serde_json::json!({ "membership": membership });
        if membership == "join"
            && let Some(via) = self.restricted_join_authoriser(room_id, user_id).await?
        {
            content["join_authorised_via_users_server"] = via.as_str().into();
        }
        let template = PduTemplate::state(TimelineEventType::RoomMember, user_id.as_str(), content);
        let mut guard = self.room_locks.lock(room_id).await;
        let head = match guard.take() {
            Some(head) => guard.insert(head),
            None => guard.insert(self.load_head(room_id).await?),
        };
        let keys = self.auth_keys(&head.rules, user_id, &template)?;
        let state = self.head_state(room_id, head, keys).await?;
        let pdu = self
            .build_authorised(
                &head.rules,
                room_id,
                user_id,
                template,
                head.extremities.clone(),
                head.depth + 1,
                &state,
            )?
            .map_err(Error::Forbidden)?;
        drop(guard);
        let mut event = pdu.json;
        // The user's server hashes and signs the event it returns.
        event.remove("hashes");
        event.remove("signatures");
        Ok((version, event))
    }

    /// For a join to a `restricted` (or `knock_restricted`) room by a user who is neither invited
    /// nor joined: a local member who may invite, to name in `join_authorised_via_users_server`,
    /// when the user is joined to one of the rooms the join rule allows (as far as this server
    /// knows). `None` otherwise, and the authorisation rules then decide.
    async fn restricted_join_authoriser(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<OwnedUserId>> {
        let key = (StateEventType::RoomJoinRules, String::new());
        let state = self
            .current_state_events(room_id, vec![key.clone()])
            .await?;
        let Some(join_rules) = state.get(&key) else {
            return Ok(None);
        };
        let content: JsonValue = serde_json::from_str(join_rules.content.get()).unwrap_or_default();
        if !matches!(
            content["join_rule"].as_str(),
            Some("restricted" | "knock_restricted")
        ) || matches!(
            self.membership_of(room_id, user_id).await?.as_deref(),
            Some("invite" | "join")
        ) {
            return Ok(None);
        }
        let allowed_rooms = content["allow"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == "m.room_membership")
            .filter_map(|a| a["room_id"].as_str().and_then(|r| RoomId::parse(r).ok()));
        let mut allowed = false;
        for allowed_room in allowed_rooms {
            if self.membership_of(&allowed_room, user_id).await?.as_deref() == Some("join") {
                allowed = true;
                break;
            }
        }
        if !allowed {
            return Ok(None);
        }
        let levels = self.power_levels(room_id).await?;
        let needed = levels["invite"].as_i64().unwrap_or(0);
        let room = room_id.to_string();
        let members = self
            .db
            .read(move |c| storage::rooms::members(c, &room, Some("join")))
            .await?;
        for member in members {
            let Ok(member) = OwnedUserId::try_from(member.user_id) else {
                continue;
            };
            if member.server_name() == self.server_name()
                && self.user_power(room_id, &levels, &member).await? >= needed
            {
                return Ok(Some(member));
            }
        }
        Ok(None)
    }

    /// `send_join`: checks, signs and appends the join event of a user of `origin`; answers the
    /// room's state before it and the auth chain.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
    ) -> Result<JoinedRoom> {
        let (pdu, nid, state_before) = self
            .receive_membership(origin, room_id, event_id, pdu, "join")
            .await?;
        let room = room_id.to_string();
        let (state, auth_chain, servers_in_room) = self
            .db
            .read(move |c| {
                let state_nids: Vec<i64> = match state_before {
                    Some(group) => storage::state::load_state(c, group)?
                        .into_values()
                        .collect(),
                    None => Vec::new(),
                };
                let mut state = Vec::new();
                for nid in &state_nids {
                    if let Some(row) = storage::events::get_event_by_nid(c, *nid)? {
                        state.push(row.json);
                    }
                }
                let mut seeds = state_nids;
                seeds.push(nid);
                let auth_chain: Vec<String> = storage::dag::auth_chain(c, &room, &seeds)?
                    .into_iter()
                    .map(|row| row.json)
                    .collect();
                let servers = storage::room_servers::joined_servers(c, &room)?;
                Ok((state, auth_chain, servers))
            })
            .await?;
        let raw = |json: String| {
            RawJsonValue::from_string(json)
                .map_err(|e| Error::Internal(format!("stored event is not JSON: {e}")))
        };
        Ok(JoinedRoom {
            event: pdu.json.clone(),
            state: state.into_iter().map(raw).collect::<Result<_>>()?,
            auth_chain: auth_chain.into_iter().map(raw).collect::<Result<_>>()?,
            servers_in_room,
        })
    }

    /// `send_leave`: checks, signs and appends the leave event of a user of `origin`.
    pub async fn send_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
    ) -> Result<()> {
        self.receive_membership(origin, room_id, event_id, pdu, "leave")
            .await?;
        Ok(())
    }

    /// The checks `send_join`, `send_leave` and `send_knock` share, then this server's signature and the
    /// append. Returns the appended PDU, its stream ordering and the state group before it.
    pub(super) async fn receive_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        raw: &RawJsonValue,
        membership: &str,
    ) -> Result<(Arc<Pdu>, i64, Option<i64>)> {
        let (_, rules) = self.room_rules(room_id).await?;
        self.ensure_acl_allows(origin, room_id).await?;
        let mut json: CanonicalJsonObject = serde_json::from_str(raw.get())
            .map_err(|e| Error::BadJson(format!("the event is not canonical JSON: {e}")))?;
        // What the sending server put in `unsigned` is not covered by its signature.
        json.remove("unsigned");
        room::check_format(&rules, &json).map_err(|e| Error::BadJson(e.to_string()))?;
        let computed =
            room::event_id_for(&rules, &json).map_err(|e| Error::BadJson(e.to_string()))?;
        if computed != event_id {
            return Err(Error::BadJson(format!(
                "the event's id is {computed}, not {event_id}"
            )));
        }
        let pdu = Pdu::from_json_with_rules(&rules, computed, room_id, json.clone())
            .map_err(|e| Error::BadJson(e.to_string()))?;
        if pdu.sender.server_name() != origin {
            return Err(Error::Forbidden(format!(
                "{} is not a user of {origin}",
                pdu.sender
            )));
        }
        if pdu.kind != TimelineEventType::RoomMember
            || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
            || membership_of(&pdu).as_deref() != Some(membership)
        {
            return Err(Error::BadJson(format!(
                "the event is not the sender's own {membership}"
            )));
        }
        self.sign_as_resident(&rules, &mut json)?;
        let keys = self.event_keys(&rules, &json).await?;
        match ruma::signatures::verify_event(&keys, &json, &rules) {
            Ok(Verified::All) => {}
            Ok(Verified::Signatures) => {
                return Err(Error::BadJson(
                    "the event's content hash does not match".into(),
                ));
            }
            Err(e) => {
                return Err(Error::Forbidden(format!(
                    "the event's signatures do not verify: {e}"
                )));
            }
        }
        let pdu = Arc::new(
            Pdu::from_json_with_rules(&rules, pdu.event_id, room_id, json)
                .map_err(|e| Error::BadJson(e.to_string()))?,
        );
        let (nid, state_before) = self.append_external_pdu(pdu.clone()).await?;
        Ok((pdu, nid, state_before))
    }

    /// Adds this server's signature to an event (which does not change its id).
    pub(super) fn sign_as_resident(
        &self,
        rules: &RoomVersionRules,
        json: &mut CanonicalJsonObject,
    ) -> Result<()> {
        let keypair = self.signing_key.keypair();
        ruma::signatures::sign_event(self.server_name().as_str(), keypair, json, &rules.redaction)
            .map_err(|e| Error::Internal(format!("cannot sign the event: {e}")))
    }

    /// The public keys of every server that must have signed `json`, for each key id it signed
    /// with, valid at the event's `origin_server_ts`. Keys that cannot be had are left out, so
    /// verification then names the signature it could not check.
    pub(super) async fn event_keys(
        &self,
        rules: &RoomVersionRules,
        json: &CanonicalJsonObject,
    ) -> Result<PublicKeyMap> {
        let servers =
            ruma::signatures::required_server_signatures_to_verify_event(json, &rules.signatures)
                .map_err(|e| Error::BadJson(format!("cannot tell who signed the event: {e}")))?;
        let at = json
            .get("origin_server_ts")
            .and_then(CanonicalJsonValue::as_integer)
            .and_then(|ts| ruma::UInt::try_from(i64::from(ts)).ok())
            .map_or_else(MilliSecondsSinceUnixEpoch::now, MilliSecondsSinceUnixEpoch);
        let mut map = PublicKeyMap::new();
        for server in servers {
            let key_ids: Vec<String> = json
                .get("signatures")
                .and_then(CanonicalJsonValue::as_object)
                .and_then(|s| s.get(server.as_str()))
                .and_then(CanonicalJsonValue::as_object)
                .map(|keys| keys.keys().cloned().collect())
                .unwrap_or_default();
            let mut set = ruma::signatures::PublicKeySet::new();
            for key_id in key_ids {
                let Ok(id) = OwnedServerSigningKeyId::try_from(key_id.as_str()) else {
                    continue;
                };
                match self.federation.verify_key(&server, &id, at).await {
                    Ok(key) => {
                        set.insert(key_id, key);
                    }
                    Err(e) => {
                        tracing::debug!(server.name = %server, key.id = %key_id, error = %e, "no key to check an event signature with");
                    }
                }
            }
            map.insert(server.to_string(), set);
        }
        Ok(map)
    }
}
