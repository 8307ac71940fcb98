//! Invites across servers (`PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`), both ways.
//!
//! A local user inviting a user of another server: the invite is built and authorised on the
//! room's head like any local event, but not written yet; the invitee's server must sign it
//! first. It gets the event with the room's state described as full PDUs (create, join rules,
//! name, alias, avatar, topic, encryption and the inviter's membership), and answers the same
//! event (same reference hash) with its signature added; `append_external_pdu` then authorises
//! and writes it, and the federation outbox sends it on like any local event.
//!
//! A user of another server inviting a local user: the event is checked (format, event id, the
//! origin's user inviting a local user, the signatures), signed by this server and answered.
//! When this server has no joined member in the room, the invite is kept as an outlier with the
//! room's stripped state in its `unsigned.invite_room_state`, and the invitee's membership
//! becomes `invite`, so `/sync` shows it with that state; the invitee then joins through the
//! inviting server (`remote_join.rs`). When this server is in the room, the event arrives through
//! the room's `/send` traffic as well, and only the signature is answered here.

use std::sync::Arc;

use ruma::api::federation::membership::{
    RawStrippedState, create_invite, create_leave_event, prepare_leave_event,
};
use ruma::canonical_json::CanonicalJsonValue;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::signatures::Verified;
use ruma::{CanonicalJsonObject, EventId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::super::{Error, Result, Services};
use super::append::membership_of;
use super::remote_join::{remote_error, through_each};
use crate::federation::client::SendError;
use crate::room::{self, Pdu, PduTemplate};
use crate::storage::events::NewEvent;
use crate::storage::{self, state};

/// The state types that describe a room to an invitee, besides the inviter's membership.
const INVITE_STATE_TYPES: [StateEventType; 7] = [
    StateEventType::RoomCreate,
    StateEventType::RoomJoinRules,
    StateEventType::RoomName,
    StateEventType::RoomCanonicalAlias,
    StateEventType::RoomAvatar,
    StateEventType::RoomTopic,
    StateEventType::RoomEncryption,
];

impl Services {
    /// `sender` (local) invites `target` (of another server) to `room_id`; see the module docs.
    pub(super) async fn invite_remote(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        content: JsonValue,
    ) -> Result<()> {
        let template = PduTemplate::state(TimelineEventType::RoomMember, target.as_str(), content);
        let pdu = {
            let mut guard = self.room_locks.lock(room_id).await;
            let head = match guard.take() {
                Some(head) => guard.insert(head),
                None => guard.insert(self.load_head(room_id).await?),
            };
            let keys = self.auth_keys(&head.rules, sender, &template)?;
            let state = self.head_state(room_id, head, keys).await?;
            self.build_authorised(
                &head.rules,
                room_id,
                sender,
                template,
                head.extremities.clone(),
                head.depth + 1,
                &state,
            )?
            .map_err(Error::Forbidden)?
        };
        let (version, rules) = self.room_rules(room_id).await?;
        let invite_room_state = self.invite_room_state(room_id, sender).await?;
        let raw = serde_json::value::to_raw_value(&pdu.json)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let request = create_invite::v2::Request::new(
            room_id.to_owned(),
            pdu.event_id.clone(),
            version,
            raw,
            invite_room_state,
        );
        let server = target.server_name();
        let response = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| invite_error(server, e))?;
        let mut json: CanonicalJsonObject = serde_json::from_str(response.event.get())
            .map_err(|e| Error::RemoteServer(format!("{server} answered no event: {e}")))?;
        json.remove("unsigned");
        let signed_by_invitee = json
            .get("signatures")
            .and_then(CanonicalJsonValue::as_object)
            .is_some_and(|s| s.contains_key(server.as_str()));
        if room::event_id_for(&rules, &json).ok().as_ref() != Some(&pdu.event_id)
            || !signed_by_invitee
        {
            return Err(Error::RemoteServer(format!(
                "{server} did not answer the invite signed"
            )));
        }
        let keys = self.event_keys(&rules, &json).await?;
        if !matches!(
            ruma::signatures::verify_event(&keys, &json, &rules),
            Ok(Verified::All)
        ) {
            return Err(Error::RemoteServer(format!(
                "the invite {server} answered does not verify"
            )));
        }
        let signed = Pdu::from_json_with_rules(&rules, pdu.event_id.clone(), room_id, json)
            .map_err(|e| Error::RemoteServer(e.to_string()))?;
        self.append_external_pdu(Arc::new(signed)).await?;
        Ok(())
    }

    /// The room's state an invitee is shown, as full PDUs.
    pub(super) async fn invite_room_state(
        &self,
        room_id: &RoomId,
        sender: &UserId,
    ) -> Result<Vec<RawStrippedState>> {
        let mut keys: Vec<(StateEventType, String)> = INVITE_STATE_TYPES
            .iter()
            .map(|kind| (kind.clone(), String::new()))
            .collect();
        keys.push((StateEventType::RoomMember, sender.to_string()));
        let state = self.current_state_events(room_id, keys).await?;
        state
            .values()
            .map(|pdu| {
                serde_json::value::to_raw_value(&pdu.json)
                    .map(RawStrippedState::Pdu)
                    .map_err(|e| Error::Internal(e.to_string()))
            })
            .collect()
    }

    /// `PUT /invite` v2 from `origin`: checks and signs the invite of a local user, and keeps it
    /// when this server is not in the room (see the module docs). Answers the signed event.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        version: &RoomVersionId,
        event: &RawJsonValue,
        invite_room_state: &[RawStrippedState],
    ) -> Result<CanonicalJsonObject> {
        self.ensure_acl_allows(origin, room_id).await?;
        let rules = room::rules_for(version)
            .ok_or_else(|| Error::IncompatibleRoomVersion(version.clone()))?;
        let mut json: CanonicalJsonObject = serde_json::from_str(event.get())
            .map_err(|e| Error::BadJson(format!("the event is not canonical JSON: {e}")))?;
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
        let target = pdu
            .state_key
            .as_deref()
            .and_then(|key| UserId::parse(key).ok())
            .filter(|_| pdu.kind == TimelineEventType::RoomMember)
            .filter(|_| membership_of(&pdu).as_deref() == Some("invite"))
            .ok_or_else(|| Error::BadJson("the event is not an invite".into()))?;
        if pdu.sender.server_name() != origin {
            return Err(Error::Forbidden(format!(
                "{} is not a user of {origin}",
                pdu.sender
            )));
        }
        self.require_local_user(&target).await?;
        let keys = self.event_keys(&rules, &json).await?;
        if !matches!(
            ruma::signatures::verify_event(&keys, &json, &rules),
            Ok(Verified::All)
        ) {
            return Err(Error::Forbidden(
                "the invite's signatures or hashes do not verify".into(),
            ));
        }
        self.sign_as_resident(&rules, &mut json)?;

        let (room, own) = (room_id.to_string(), self.server_name().to_string());
        let resident = self
            .db
            .read(move |c| storage::room_servers::server_is_joined(c, &room, &own))
            .await?;
        if !resident {
            self.keep_invite(version, &pdu, &json, invite_room_state)
                .await?;
        }
        Ok(json)
    }

    /// Stores a received invite for a room this server is not in, with the room's stripped
    /// state, and makes the invitee's membership `invite`.
    async fn keep_invite(
        &self,
        version: &RoomVersionId,
        pdu: &Pdu,
        signed: &CanonicalJsonObject,
        invite_room_state: &[RawStrippedState],
    ) -> Result<()> {
        let stripped: Vec<JsonValue> = invite_room_state
            .iter()
            .filter_map(stripped_event)
            .collect();
        let mut stored =
            serde_json::to_value(signed).map_err(|e| Error::Internal(e.to_string()))?;
        stored["unsigned"] = serde_json::json!({ "invite_room_state": stripped });
        let json = serde_json::to_string(&stored).map_err(|e| Error::Internal(e.to_string()))?;
        let (version, creator) = (version.to_string(), pdu.sender.to_string());
        let kind = pdu.kind.to_string();
        let prev: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
        let owned = (
            pdu.event_id.to_string(),
            pdu.room_id.to_string(),
            pdu.sender.to_string(),
            pdu.state_key.clone().unwrap_or_default(),
            pdu.depth as i64,
            u64::from(pdu.origin_server_ts.get()) as i64,
        );
        let nid = self
            .db
            .write("keep_remote_invite", move |c| {
                let (event_id, room, sender, target, depth, ts) = &owned;
                if storage::events::get_room(c, room)?.is_none() {
                    storage::events::insert_room_txn(
                        c,
                        room,
                        &version,
                        &creator,
                        storage::now_ms(),
                    )?;
                }
                let nid = storage::remote_rooms::insert_outlier_txn(
                    c,
                    &NewEvent {
                        event_id,
                        room_id: room,
                        sender,
                        kind: &kind,
                        state_key: Some(target),
                        membership: Some("invite"),
                        depth: *depth,
                        origin_server_ts: *ts,
                        json: &json,
                        prev_events: &prev,
                        state_before: None,
                        txn: None,
                    },
                )?;
                state::set_current_state_txn(
                    c,
                    room,
                    "m.room.member",
                    target,
                    nid,
                    Some("invite"),
                )?;
                Ok(nid)
            })
            .await?;
        tracing::info!(room.id = %pdu.room_id, event.id = %pdu.event_id, "kept an invite from another server");
        self.announce(pdu, nid);
        Ok(())
    }
}

impl Services {
    /// Rejects an invite to (or withdraws a knock on) a room this server is not in, through the
    /// servers `join_candidates` names: `make_leave`, then `send_leave` v2 of the leave built
    /// from its template. The leave is kept as an outlier and the user's membership becomes
    /// `leave`.
    pub(super) async fn reject_remote_invite(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let servers = self.join_candidates(room_id, user_id, &[]).await?;
        let none = || {
            Error::NotFound(format!(
                "no server to reject the invite to {room_id} through"
            ))
        };
        through_each(room_id, &servers, "reject an invite", none, |server| {
            self.reject_through(user_id, room_id, server, reason)
        })
        .await
    }

    async fn reject_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> Result<()> {
        let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        let response = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(server, e))?;
        let (stored_version, _) = self.room_rules(room_id).await?;
        let version = response.room_version.unwrap_or(stored_version);
        let rules = room::rules_for(&version)
            .ok_or_else(|| Error::UnsupportedRoomVersion(format!("room version {version}")))?;
        let leave = self
            .build_from_template(&rules, room_id, user_id, &response.event, "leave", reason)
            .await?;
        let raw = serde_json::value::to_raw_value(&leave.json)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let request =
            create_leave_event::v2::Request::new(room_id.to_owned(), leave.event_id.clone(), raw);
        self.federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(server, e))?;
        let json = leave
            .canonical_json()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let pdu = Arc::new(leave);
        let stored = pdu.clone();
        let nid = self
            .db
            .write("keep_rejected_invite", move |c| {
                let kind = stored.kind.to_string();
                let prev: Vec<String> =
                    stored.prev_events.iter().map(ToString::to_string).collect();
                let nid = storage::remote_rooms::insert_outlier_txn(
                    c,
                    &NewEvent {
                        event_id: stored.event_id.as_str(),
                        room_id: stored.room_id.as_str(),
                        sender: stored.sender.as_str(),
                        kind: &kind,
                        state_key: stored.state_key.as_deref(),
                        membership: Some("leave"),
                        depth: stored.depth as i64,
                        origin_server_ts: u64::from(stored.origin_server_ts.get()) as i64,
                        json: &json,
                        prev_events: &prev,
                        state_before: None,
                        txn: None,
                    },
                )?;
                state::set_current_state_txn(
                    c,
                    stored.room_id.as_str(),
                    "m.room.member",
                    stored.sender.as_str(),
                    nid,
                    Some("leave"),
                )?;
                Ok(nid)
            })
            .await?;
        tracing::info!(room.id = %room_id, event.id = %pdu.event_id, "rejected an invite from another server");
        self.announce(&pdu, nid);
        Ok(())
    }
}

/// One entry of `invite_room_state` as the stripped event `/sync` shows (type, state key,
/// content, sender), whether it came as a full PDU or stripped already.
#[allow(deprecated)]
pub(super) fn stripped_event(state: &RawStrippedState) -> Option<JsonValue> {
    let event: JsonValue = match state {
        RawStrippedState::Pdu(raw) => serde_json::from_str(raw.get()).ok()?,
        RawStrippedState::Stripped(raw) => serde_json::from_str(raw.json().get()).ok()?,
        _ => return None,
    };
    Some(serde_json::json!({
        "type": event.get("type")?,
        "state_key": event.get("state_key")?,
        "content": event.get("content")?,
        "sender": event.get("sender")?,
    }))
}

/// What a failed invite request to `server` means for the inviting user.
fn invite_error(server: &ServerName, error: SendError) -> Error {
    match error {
        SendError::Disabled => Error::Forbidden("federation is off on this server".into()),
        SendError::Denied(server) => Error::Forbidden(format!(
            "{server} is not allowed to federate with this server"
        )),
        SendError::Remote {
            status, message, ..
        } if status == http::StatusCode::FORBIDDEN => {
            Error::Forbidden(format!("{server} refused the invite: {message}"))
        }
        SendError::Remote {
            status, message, ..
        } if status == http::StatusCode::NOT_FOUND => {
            Error::NotFound(format!("{server} does not know the invitee: {message}"))
        }
        other => Error::RemoteServer(format!("cannot invite through {server}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_room_state_is_shown_stripped_whether_it_came_as_pdus_or_not() {
        let pdu = serde_json::value::to_raw_value(&serde_json::json!({
            "type": "m.room.name", "state_key": "", "content": {"name": "Garden"},
            "sender": "@alice:hs1", "room_id": "!r:hs1", "depth": 3, "hashes": {},
        }))
        .unwrap();
        let shown = stripped_event(&RawStrippedState::Pdu(pdu)).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({
                "type": "m.room.name", "state_key": "", "content": {"name": "Garden"},
                "sender": "@alice:hs1",
            })
        );
        let incomplete = serde_json::value::to_raw_value(&serde_json::json!({
            "type": "m.room.name", "content": {"name": "Garden"},
        }))
        .unwrap();
        assert_eq!(stripped_event(&RawStrippedState::Pdu(incomplete)), None);
    }
}
