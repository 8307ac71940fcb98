//! A local user joining a room that lives on other servers (this server has no joined member in
//! it): the joining side of the `make_join`/`send_join` handshake.
//!
//! The servers are tried in order. `make_join` (with the room versions this server supports in
//! `ver`) answers a template; the join is built from it (the user's profile in the content),
//! hashed and signed here, and handed over with `send_join` v2. The answer is checked before
//! anything is stored: every state and auth chain event must have its id, format and the
//! signatures it needs (keys through `Federation::verify_key`; a wrong content hash keeps the
//! redacted form), and pass the authorization rules against its own auth events (an event that
//! fails is left out); the join must be allowed by the returned state. Then one write stores the
//! state and auth chain as outliers, the room's state at the join as a new state group, the join
//! as a timeline event on it (the room's only forward extremity), the current state after the
//! join with every member's membership, so the federation outbox and the `/send` pipeline know
//! the room's servers from then on. A failure anywhere before that write stores nothing.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::api::federation::membership::{create_join_event, prepare_join_event};
use ruma::api::federation::query::get_room_information;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::Verified;
use ruma::{
    CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedServerName, RoomAliasId, RoomId, RoomVersionId, ServerName, UserId,
};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::super::{Error, Result, Services};
use super::append::membership_of;
use crate::federation::client::SendError;
use crate::room::{self, Pdu, PduTemplate, StateMap};
use crate::storage::events::NewEvent;
use crate::storage::{self, state};

/// A room's state at a join, checked: the events by id and the state map over them.
struct CheckedState {
    events: HashMap<OwnedEventId, Arc<Pdu>>,
    state: StateMap<OwnedEventId>,
}

impl Services {
    /// Whether a join of `room_id` must go through other servers: this server has no joined
    /// member there, and some other server may know the room.
    pub(super) async fn joins_remotely(
        &self,
        room_id: &RoomId,
        servers: &[OwnedServerName],
    ) -> Result<bool> {
        if !self.federation.is_enabled() || servers.is_empty() {
            return Ok(false);
        }
        Ok(!self.is_resident(room_id).await?)
    }

    /// Whether this server has a joined member in the room.
    pub(super) async fn is_resident(&self, room_id: &RoomId) -> Result<bool> {
        let (room, own) = (room_id.to_string(), self.server_name().to_string());
        Ok(self
            .db
            .read(move |c| storage::room_servers::server_is_joined(c, &room, &own))
            .await?)
    }

    /// The servers to ask about `room_id`, in order: `via`, then those an alias lookup named,
    /// then the server of the user's invite (or, after a knock, the servers of the senders of
    /// the stripped state the knock was answered with, the creator's first), then the server in
    /// the room id (before v12); this server left out.
    pub(super) async fn join_candidates(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        via: &[OwnedServerName],
    ) -> Result<Vec<OwnedServerName>> {
        let mut servers: Vec<OwnedServerName> = via.to_vec();
        let (room, user) = (room_id.to_string(), user_id.to_string());
        let pending = self
            .db
            .read(move |c| {
                let Some(row) = storage::rooms::membership(c, &room, &user)? else {
                    return Ok(None);
                };
                if !matches!(row.membership.as_str(), "invite" | "knock") {
                    return Ok(None);
                }
                storage::events::get_event_by_nid(c, row.event_nid)
            })
            .await?;
        if let Some(row) = pending
            && let Ok(event) = serde_json::from_str::<JsonValue>(&row.json)
        {
            let server_of = |sender: &JsonValue| {
                sender
                    .as_str()
                    .and_then(|s| UserId::parse(s).ok())
                    .map(|s| s.server_name().to_owned())
            };
            servers.extend(server_of(&event["sender"]));
            let stripped = event["unsigned"]["invite_room_state"].as_array();
            let mut senders: Vec<&JsonValue> = stripped.into_iter().flatten().collect();
            senders.sort_by_key(|e| e["type"] != "m.room.create");
            servers.extend(senders.iter().filter_map(|e| server_of(&e["sender"])));
        }
        if let Some(server) = room_id.server_name() {
            servers.push(server.to_owned());
        }
        let own = self.server_name();
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| s != own && seen.insert(s.clone()));
        Ok(servers)
    }

    /// A room alias of another server, asked of that server: the room id and servers to join
    /// through.
    pub(super) async fn resolve_remote_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let response = self
            .federation
            .send(alias.server_name(), request)
            .await
            .map_err(|e| remote_error(alias.server_name(), e))?;
        Ok((response.room_id, response.servers))
    }

    /// Joins `user_id` to `room_id` through the first of `servers` that lets it (see the module
    /// docs). The error is the last server's.
    pub(super) async fn join_remote(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        let none = || {
            Error::NotFound(format!(
                "room {room_id} is not known here, and no server to join it through was given"
            ))
        };
        through_each(room_id, servers, "join", none, |server| {
            self.join_through(user_id, room_id, server, reason)
        })
        .await
    }

    async fn join_through(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut request =
            prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        request.ver = room::supported_versions();
        let response = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(server, e))?;
        let version = response.room_version.unwrap_or(RoomVersionId::V1);
        let rules = room::rules_for(&version)
            .ok_or_else(|| Error::UnsupportedRoomVersion(format!("room version {version}")))?;
        let join = self
            .build_from_template(&rules, room_id, user_id, &response.event, "join", reason)
            .await?;

        let raw = serde_json::value::to_raw_value(&join.json)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let request =
            create_join_event::v2::Request::new(room_id.to_owned(), join.event_id.clone(), raw);
        let answer = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(server, e))?
            .room_state;

        let join = match &answer.event {
            // A restricted join comes back with the resident server's signature.
            Some(signed) => self
                .check_remote_pdu(&rules, room_id, signed)
                .await?
                .filter(|pdu| pdu.event_id == join.event_id)
                .map(Arc::new)
                .ok_or_else(|| {
                    Error::RemoteServer(format!("{server} returned a different join event"))
                })?,
            None => Arc::new(join),
        };
        let checked = self
            .check_room_state(&rules, room_id, &answer.state, &answer.auth_chain)
            .await?;
        let fetch = |id: &EventId| checked.events.get(id).cloned();
        let lookup = |kind: &StateEventType, key: &str| {
            checked
                .state
                .get(&(kind.clone(), key.to_owned()))
                .and_then(|id| checked.events.get(id).cloned())
        };
        room::check_auth(&rules, &join, fetch, lookup).map_err(|e| {
            Error::RemoteServer(format!(
                "{server} returned a state that does not allow the join: {e}"
            ))
        })?;
        self.persist_remote_join(&version, &join, checked).await
    }

    /// The member event from a `make_join` or `make_leave` template: its `prev_events`,
    /// `auth_events` and `depth`, the user's `membership` (and profile, for a join) in the
    /// content, hashed and signed by this server.
    pub(super) async fn build_from_template(
        &self,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        user_id: &UserId,
        template: &RawJsonValue,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<Pdu> {
        let template: JsonValue = serde_json::from_str(template.get())
            .map_err(|e| Error::RemoteServer(format!("the template is not JSON: {e}")))?;
        let ids = |field: &str| -> Result<Vec<OwnedEventId>> {
            serde_json::from_value(template[field].clone()).map_err(|e| {
                Error::RemoteServer(format!("the template's {field} are invalid: {e}"))
            })
        };
        let (prev_events, auth_events) = (ids("prev_events")?, ids("auth_events")?);
        let depth = template["depth"]
            .as_u64()
            .ok_or_else(|| Error::RemoteServer("the template has no depth".into()))?;
        let mut content = self
            .member_content(membership, user_id, reason, false)
            .await?;
        if let Some(via) = template["content"].get("join_authorised_via_users_server") {
            content["join_authorised_via_users_server"] = via.clone();
        }
        let keypair = self.signing_key.keypair();
        room::build_pdu(
            rules,
            Some(room_id),
            PduTemplate::state(TimelineEventType::RoomMember, user_id.as_str(), content),
            user_id,
            prev_events,
            auth_events,
            depth,
            MilliSecondsSinceUnixEpoch::now(),
            self.server_name(),
            keypair,
        )
        .map_err(|e| Error::RemoteServer(format!("cannot build the event from the template: {e}")))
    }

    /// One PDU of a `send_join` answer through the checks on receipt: format, event id,
    /// signatures (a wrong content hash yields the redacted form). `None` when it fails them.
    pub(super) async fn check_remote_pdu(
        &self,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        raw: &RawJsonValue,
    ) -> Result<Option<Pdu>> {
        let Ok(mut json) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else {
            return Ok(None);
        };
        if room::check_format(rules, &json).is_err() {
            return Ok(None);
        }
        let Ok(event_id) = room::event_id_for(rules, &json) else {
            return Ok(None);
        };
        let keys = self.event_keys(rules, &json).await?;
        let verified = match ruma::signatures::verify_event(&keys, &json, rules) {
            Ok(verified) => verified,
            Err(e) => {
                tracing::info!(event.id = %event_id, error = %e, "a joined room's event does not verify");
                return Ok(None);
            }
        };
        json.remove("unsigned");
        let Ok(pdu) = Pdu::from_json_with_rules(rules, event_id, room_id, json) else {
            return Ok(None);
        };
        Ok(match verified {
            Verified::All => Some(pdu),
            Verified::Signatures => room::redact_pdu(&pdu, rules, None).ok(),
        })
    }

    /// The state and auth chain of a `send_join` answer, checked (see the module docs).
    async fn check_room_state(
        &self,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        state: &[Box<RawJsonValue>],
        auth_chain: &[Box<RawJsonValue>],
    ) -> Result<CheckedState> {
        let mut events: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let mut state_ids = Vec::with_capacity(state.len());
        for (i, raw) in state.iter().chain(auth_chain).enumerate() {
            if let Some(pdu) = self.check_remote_pdu(rules, room_id, raw).await? {
                if i < state.len() {
                    state_ids.push(pdu.event_id.clone());
                }
                events.insert(pdu.event_id.clone(), Arc::new(pdu));
            }
        }
        let mut ordered: Vec<Arc<Pdu>> = events.values().cloned().collect();
        ordered.sort_by_key(|pdu| pdu.depth);
        for pdu in ordered {
            let fetch = |id: &EventId| events.get(id).cloned();
            if let Err(e) = room::check_auth_by_auth_events(rules, &pdu, fetch) {
                tracing::info!(event.id = %pdu.event_id, error = %e, "a joined room's event is not allowed by its auth events");
                events.remove(&pdu.event_id);
            }
        }
        let mut state = StateMap::new();
        for id in state_ids {
            if let Some(key) = events.get(&id).and_then(|pdu| pdu.state_map_key()) {
                state.insert(key, id);
            }
        }
        if !state.contains_key(&(StateEventType::RoomCreate, String::new())) {
            return Err(Error::RemoteServer(format!(
                "the state of {room_id} came without a valid create event"
            )));
        }
        Ok(CheckedState { events, state })
    }

    /// The one write of a remote join (see the module docs), under the room's lock; then the
    /// room's listeners are woken.
    async fn persist_remote_join(
        &self,
        version: &RoomVersionId,
        join: &Arc<Pdu>,
        checked: CheckedState,
    ) -> Result<()> {
        let room_id = join.room_id.clone();
        let creator = checked
            .state
            .get(&(StateEventType::RoomCreate, String::new()))
            .and_then(|id| checked.events.get(id))
            .map(|create| create.sender.to_string())
            .unwrap_or_default();
        let mut outliers: Vec<Arc<Pdu>> = checked.events.values().cloned().collect();
        outliers.sort_by_key(|pdu| pdu.depth);
        let state: Vec<((String, String), String)> = checked
            .state
            .iter()
            .map(|((kind, key), id)| ((kind.to_string(), key.clone()), id.to_string()))
            .collect();
        let join_json = join
            .canonical_json()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let version = version.to_string();
        let join_pdu = join.clone();
        let mut guard = self.room_locks.lock(&room_id).await;
        let nid = self
            .db
            .write("persist_remote_join", move |c| {
                let room = join_pdu.room_id.as_str();
                if storage::events::get_room(c, room)?.is_none() {
                    storage::events::insert_room_txn(
                        c,
                        room,
                        &version,
                        &creator,
                        storage::now_ms(),
                    )?;
                }
                let mut nids: HashMap<String, (i64, Option<String>)> = HashMap::new();
                for pdu in &outliers {
                    let json = pdu.canonical_json().map_err(|e| {
                        storage::StorageError::Aborted(format!("event is not JSON: {e}"))
                    })?;
                    let membership = membership_of(pdu);
                    let nid = with_new_event(pdu, &json, membership.as_deref(), None, |e| {
                        storage::remote_rooms::insert_outlier_txn(c, e)
                    })?;
                    nids.insert(pdu.event_id.to_string(), (nid, membership));
                }
                let mut rows = Vec::with_capacity(state.len());
                for ((kind, key), id) in &state {
                    let Some((nid, _)) = nids.get(id) else {
                        continue;
                    };
                    rows.push((state::intern_key_txn(c, kind, key)?, Some(*nid)));
                }
                rows.sort_unstable();
                let group = state::create_group_txn(c, room, None, &rows)?;

                storage::remote_rooms::clear_forward_extremities_txn(c, room)?;
                let join_nid =
                    with_new_event(&join_pdu, &join_json, Some("join"), Some(group), |e| {
                        storage::events::insert_event_txn(c, e)
                    })?;
                let member_key =
                    state::intern_key_txn(c, "m.room.member", join_pdu.sender.as_str())?;
                let after =
                    state::create_group_txn(c, room, Some(group), &[(member_key, Some(join_nid))])?;
                storage::events::set_state_after_txn(c, join_nid, after)?;

                for ((kind, key), _) in storage::received::current_state_ids(c, room)? {
                    if !state.iter().any(|((k, s), _)| *k == kind && *s == key) {
                        storage::received::remove_current_state_txn(c, room, &kind, &key)?;
                    }
                }
                for ((kind, key), id) in &state {
                    if let Some((nid, membership)) = nids.get(id) {
                        state::set_current_state_txn(
                            c,
                            room,
                            kind,
                            key,
                            *nid,
                            membership.as_deref(),
                        )?;
                    }
                }
                state::set_current_state_txn(
                    c,
                    room,
                    "m.room.member",
                    join_pdu.sender.as_str(),
                    join_nid,
                    Some("join"),
                )?;
                Ok(join_nid)
            })
            .await?;
        *guard = None;
        drop(guard);
        self.tails.forget_room(room_id.as_str());
        tracing::info!(room.id = %room_id, event.id = %join.event_id, "joined a room of other servers");
        self.announce(join, nid);
        Ok(())
    }
}

/// Runs `insert` on the stored form of a PDU.
pub(super) fn with_new_event<T>(
    pdu: &Pdu,
    json: &str,
    membership: Option<&str>,
    state_before: Option<i64>,
    insert: impl FnOnce(&NewEvent<'_>) -> T,
) -> T {
    let kind = pdu.kind.to_string();
    let prev: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
    insert(&NewEvent {
        event_id: pdu.event_id.as_str(),
        room_id: pdu.room_id.as_str(),
        sender: pdu.sender.as_str(),
        kind: &kind,
        state_key: pdu.state_key.as_deref(),
        membership,
        depth: pdu.depth as i64,
        origin_server_ts: u64::from(pdu.origin_server_ts.get()) as i64,
        json,
        prev_events: &prev,
        state_before,
        txn: None,
    })
}

/// What a failed `make_*`/`send_*` request to `server` means for the joining (or rejecting) user.
pub(super) fn remote_error(server: &ServerName, error: SendError) -> Error {
    match error {
        SendError::Disabled => Error::NotFound("federation is off on this server".into()),
        SendError::Denied(server) => Error::Forbidden(format!(
            "{server} is not allowed to federate with this server"
        )),
        SendError::Remote {
            status, message, ..
        } if status == http::StatusCode::NOT_FOUND => {
            Error::NotFound(format!("{server} does not know the room: {message}"))
        }
        SendError::Remote {
            status, message, ..
        } if status == http::StatusCode::FORBIDDEN => {
            Error::Forbidden(format!("{server} refused: {message}"))
        }
        other => Error::RemoteServer(format!("no answer from {server} about the room: {other}")),
    }
}

/// Runs `attempt` through each of `servers` in turn until one succeeds (`what` names the action
/// in the log); the last failure if none does, `none()` if there was no server to try.
pub(super) async fn through_each<'a, F, Fut>(
    room_id: &RoomId,
    servers: &'a [OwnedServerName],
    what: &str,
    none: impl FnOnce() -> Error,
    mut attempt: F,
) -> Result<()>
where
    F: FnMut(&'a ServerName) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut last = None;
    for server in servers {
        match attempt(server).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!(room.id = %room_id, server.name = %server, error = %e, "cannot {what} through this server");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(none))
}
