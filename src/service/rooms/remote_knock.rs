//! Knocking over federation (room versions 7 and later, join rule `knock` or `knock_restricted`).
//!
//! The resident side: `make_knock` answers a template like `make_join` (`make_membership` with
//! `knock`, so a room that does not allow knocking refuses already), and `send_knock` takes the
//! signed knock back through the same checks as `send_join` (`receive_membership`), appends it,
//! and answers the room's stripped state (the invite state types and the knocker's own member
//! event) as `knock_room_state`. The room's members then see the knock like a local one and may
//! invite (over federation) to accept it.
//!
//! The knocking side: a local user's knock on a room this server has no joined member in goes
//! through the servers `via` names (then the alias's, the room id's): `make_knock` (with the
//! room versions supported here), the knock built from the template, hashed and signed here,
//! `send_knock`. The knock is kept as an outlier carrying the answered stripped state (in
//! `unsigned.invite_room_state`, where `/sync` reads a remote room's stripped state) and the
//! user's membership becomes `knock`, so the room shows in `/sync`'s `knock` section. A failure
//! before that stores nothing.

use std::sync::Arc;

use ruma::api::federation::membership::{
    RawStrippedState, create_knock_event, prepare_knock_event,
};
use ruma::{EventId, OwnedRoomId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::super::{Error, Result, Services, UserSession};
use super::remote_invite::stripped_event;
use super::remote_join::{remote_error, through_each, with_new_event};
use crate::room::{self, Pdu};
use crate::storage::{self, state};

impl Services {
    /// `send_knock` from `origin`: checks, signs and appends the knock of one of its users;
    /// answers the room's stripped state.
    pub async fn send_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
    ) -> Result<Vec<RawStrippedState>> {
        let (pdu, _, _) = self
            .receive_membership(origin, room_id, event_id, pdu, "knock")
            .await?;
        self.invite_room_state(room_id, &pdu.sender).await
    }

    /// `POST /knock/{roomIdOrAlias}`: through other servers when this server has no joined
    /// member in the room (see the module docs), as a local knock otherwise.
    pub async fn knock_via(
        &self,
        session: &UserSession,
        room: &str,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> Result<OwnedRoomId> {
        let (room_id, remote) = self.membership_target(session, room, via).await?;
        let user = &session.user_id;
        if let Some(candidates) = remote {
            let none = || Error::NotFound(format!("room {room_id} is not known here"));
            through_each(&room_id, &candidates, "knock", none, |server| {
                self.knock_through(user, &room_id, server, reason)
            })
            .await?;
            return Ok(room_id);
        }
        self.knock(session, room_id.as_str(), reason).await
    }

    async fn knock_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut request =
            prepare_knock_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        request.ver = room::supported_versions();
        let response = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(server, e))?;
        let version = response.room_version;
        let rules = room::rules_for(&version)
            .ok_or_else(|| Error::UnsupportedRoomVersion(format!("room version {version}")))?;
        let knock = self
            .build_from_template(&rules, room_id, user_id, &response.event, "knock", reason)
            .await?;
        let raw = serde_json::value::to_raw_value(&knock.json)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let request =
            create_knock_event::v1::Request::new(room_id.to_owned(), knock.event_id.clone(), raw);
        let answer = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(server, e))?;
        self.keep_knock(&version, Arc::new(knock), &answer.knock_room_state)
            .await
    }

    /// Stores the knock as an outlier with the room's stripped state and makes the user's
    /// membership `knock`.
    async fn keep_knock(
        &self,
        version: &RoomVersionId,
        knock: Arc<Pdu>,
        knock_room_state: &[RawStrippedState],
    ) -> Result<()> {
        let stripped: Vec<JsonValue> = knock_room_state.iter().filter_map(stripped_event).collect();
        let mut stored =
            serde_json::to_value(&knock.json).map_err(|e| Error::Internal(e.to_string()))?;
        stored["unsigned"] = serde_json::json!({ "invite_room_state": stripped });
        let json = serde_json::to_string(&stored).map_err(|e| Error::Internal(e.to_string()))?;
        let creator = stripped
            .iter()
            .find(|e| e["type"] == "m.room.create")
            .and_then(|e| e["sender"].as_str())
            .unwrap_or_default()
            .to_owned();
        let version = version.to_string();
        let pdu = knock.clone();
        let nid = self
            .db
            .write("keep_remote_knock", move |c| {
                let room = pdu.room_id.as_str();
                if storage::events::get_room(c, room)?.is_none() {
                    storage::events::insert_room_txn(
                        c,
                        room,
                        &version,
                        &creator,
                        storage::now_ms(),
                    )?;
                }
                let nid = with_new_event(&pdu, &json, Some("knock"), None, |e| {
                    storage::remote_rooms::insert_outlier_txn(c, e)
                })?;
                state::set_current_state_txn(
                    c,
                    room,
                    "m.room.member",
                    pdu.sender.as_str(),
                    nid,
                    Some("knock"),
                )?;
                Ok(nid)
            })
            .await?;
        tracing::info!(room.id = %knock.room_id, event.id = %knock.event_id, "knocked on a room of other servers");
        self.announce(&knock, nid);
        Ok(())
    }
}
