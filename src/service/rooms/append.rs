//! The one path of a new local event: build on the forward extremities, authorise against the
//! state, persist with its state change, all under the room's lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UserId};
use serde_json::Value as JsonValue;

use super::super::client_txns::TxnKey;
use super::super::{Error, Result, Services};
use crate::room::{self, Pdu, PduTemplate};
use crate::storage::{self, events::EventRow, events::NewEvent, state};

/// How long a room has had no local event before the next one's push actions are recorded with
/// it (see `push_with_event`): the push evaluator's batching interval, beyond which it would
/// not have batched the event with others anyway.
const QUIET_ROOM: std::time::Duration = super::super::push_evaluator::MIN_WRITE_INTERVAL;

/// What else the transaction that persists a new event must do.
#[derive(Default)]
pub struct AppendOptions<'a> {
    /// (device, txn id) of a client send, recorded with the event for idempotency.
    pub txn: Option<(&'a str, &'a str)>,
    /// For a redaction: the event whose stored copy is replaced by its redacted form.
    pub redact_target: Option<Arc<Pdu>>,
}

/// Parses a stored event row back into a PDU.
pub fn pdu_from_row(row: &EventRow) -> Result<Arc<Pdu>> {
    let json: ruma::CanonicalJsonObject = serde_json::from_str(&row.json).map_err(|e| {
        Error::Internal(format!(
            "stored event {} is not valid JSON: {e}",
            row.event_id
        ))
    })?;
    let event_id = EventId::parse(&row.event_id).map_err(|e| {
        Error::Internal(format!("stored event id {} is invalid: {e}", row.event_id))
    })?;
    let room_id = RoomId::parse(&row.room_id)
        .map_err(|e| Error::Internal(format!("stored room id {} is invalid: {e}", row.room_id)))?;
    Pdu::from_json(event_id, &room_id, json)
        .map(Arc::new)
        .map_err(|e| Error::Internal(format!("stored event {} is malformed: {e}", row.event_id)))
}

impl Services {
    /// Rules of a room's version, or `M_NOT_FOUND` for a room this server does not know.
    pub(crate) async fn room_rules(
        &self,
        room_id: &RoomId,
    ) -> Result<(ruma::RoomVersionId, RoomVersionRules)> {
        let id = room_id.to_string();
        let row = self
            .db
            .read(move |c| storage::events::get_room(c, &id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("unknown room {room_id}")))?;
        let version = ruma::RoomVersionId::try_from(row.room_version.as_str())
            .map_err(|e| Error::Internal(format!("stored room version is invalid: {e}")))?;
        let rules = room::rules_for(&version)
            .ok_or_else(|| Error::Internal(format!("room version {version} is not supported")))?;
        Ok((version, rules))
    }

    /// Builds, authorises and persists a new event from a local user into an existing room.
    pub async fn append_event(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        template: PduTemplate,
        options: AppendOptions<'_>,
    ) -> Result<Arc<Pdu>> {
        let mut guard = self.room_locks.lock(room_id).await;
        // Holding the room's lock entry until the write commits keeps the cached head alive, so
        // a head is only ever reloaded when none of its writes is still in flight.
        let keep_head = tokio::sync::OwnedMutexGuard::mutex(&guard).clone();
        let head = match guard.take() {
            Some(head) => guard.insert(head),
            None => guard.insert(self.load_head(room_id).await?),
        };
        if let Some((device, txn_id)) = options.txn {
            // Checked under the lock, against writes still in flight too (the head's recent
            // sends): two requests with one transaction id make one event.
            let key = (sender.to_owned(), device.to_owned(), txn_id.to_owned());
            if let Some(event_id) = head.recent_txns.get(&key).cloned() {
                drop(guard);
                return self.pdu_by_id(&event_id).await;
            }
            let committed = TxnKey::new(room_id, sender, device, txn_id);
            if let Some(event_id) = self.client_txns.find(committed).await? {
                drop(guard);
                return self.pdu_by_id(&event_id).await;
            }
        }
        let keys = self.auth_keys(&head.rules, sender, &template)?;
        let auth_state = self.head_state(room_id, head, keys).await?;
        let pdu = self
            .build_authorised(
                &head.rules,
                room_id,
                sender,
                template,
                head.extremities.clone(),
                head.depth + 1,
                &auth_state,
            )?
            .map_err(Error::Forbidden)?;
        let redaction = match &options.redact_target {
            Some(target) => {
                let because = serde_json::Value::Object(pdu.to_client_event());
                let redacted =
                    room::redact_pdu(target, &head.rules, Some(because)).map_err(pdu_error)?;
                let json = serde_json::to_string(&redacted.json)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                Some((target.event_id.to_string(), json))
            }
            None => None,
        };
        let pdu = Arc::new(pdu);
        let mut push = self.push_with_event(room_id, head, &pdu).await;
        let push_evaluated = push.is_some();
        let notifies = push.as_ref().is_some_and(|actions| !actions.is_empty());
        let txn = options
            .txn
            .map(|(device, txn)| (device.to_owned(), txn.to_owned()));
        let mut write = PendingWrite::new(pdu.clone(), txn.clone(), redaction)?;
        // The write is queued before the lock is released and waited for after: the writer runs
        // writes in order, so the next event of the room may be built on this one at once.
        let committed = self.db.submit("persist_event", move |c| {
            let state_before = storage::events::state_after_of_prev_txn(c, &write.prev_events())?;
            let (nid, state_after) = write.persist_txn(c, state_before)?;
            if let Some(actions) = &mut push {
                for action in actions.iter_mut() {
                    action.event_nid = nid;
                }
                storage::push_actions::record_new_event_actions_txn(c, actions)?;
            }
            Ok((nid, state_after))
        });
        let in_flight = head.in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        head.advance(&pdu, sender, txn);
        drop(guard);
        let committed = committed.await;
        if let (Ok((nid, _)), Some((device, txn_id))) = (&committed, options.txn) {
            // Before the head may be dropped, so a retry always finds the send in one or the
            // other.
            let key = TxnKey::new(room_id, sender, device, txn_id);
            if let Err(e) = self.client_txns.remember(key, *nid).await {
                tracing::warn!(error = %e, "a send's transaction id is not remembered");
            }
        }
        in_flight.fetch_sub(1, Ordering::AcqRel);
        drop(keep_head);
        match committed {
            Ok((nid, _)) => {
                tracing::debug!(room.id = %room_id, event.id = %pdu.event_id, stream_ordering = nid, "persisted event");
                if push_evaluated {
                    self.counted_with_event(nid);
                }
                if notifies {
                    self.pusher_wake.notify_one();
                }
                self.announce(&pdu, nid);
                Ok(pdu)
            }
            Err(e) => {
                // The cached head includes an event that was not written; start afresh.
                *self.room_locks.lock(room_id).await = None;
                Err(e.into())
            }
        }
    }

    /// The push actions of a new message event when they are to be recorded with it: in a quiet
    /// room (no write in flight, no local event for `QUIET_ROOM`). Its unread counts then come
    /// with the event's own commit, without waiting for the evaluator and its commit. Under a
    /// stream of events the evaluator records them in batches instead, which touches each
    /// member's pages once per batch rather than once per event. `None` leaves the event to the
    /// evaluator (also when what evaluation needs cannot be read now).
    async fn push_with_event(
        &self,
        room_id: &RoomId,
        head: &mut super::head::RoomHead,
        pdu: &Pdu,
    ) -> Option<Vec<storage::push_actions::PushAction>> {
        let busy = head.in_flight.load(Ordering::Acquire) > 0
            || head.last_append.is_some_and(|at| at.elapsed() < QUIET_ROOM);
        if pdu.state_key.is_some() || busy {
            return None;
        }
        let room = match &head.push_room {
            Some(room) => room.clone(),
            None => {
                let room = Arc::new(self.push_room(room_id).await.ok()?);
                head.push_room = Some(room.clone());
                room
            }
        };
        let event = JsonValue::Object(pdu.to_client_event());
        self.actions_for(&room, room_id, 0, &event).await.ok()
    }

    /// Appends a PDU built and signed by another server for one of its users (`send_join`,
    /// `send_leave`), whose format, event id and signatures the caller checked. Under the room's
    /// lock it is authorised against its own `auth_events` and against the current state, then
    /// written on top of the current state (it was made from this server's template, so the
    /// state it was built on is what the room has had since, save newer events), and queued for
    /// the room's other servers in the same transaction. The room's head is reloaded afterwards,
    /// since the event may not extend all of it. Returns the stream ordering and the state group
    /// before the event.
    pub(super) async fn append_external_pdu(&self, pdu: Arc<Pdu>) -> Result<(i64, Option<i64>)> {
        let room_id = pdu.room_id.clone();
        let mut guard = self.room_locks.lock(&room_id).await;
        let head = match guard.take() {
            Some(head) => guard.insert(head),
            None => guard.insert(self.load_head(&room_id).await?),
        };
        let known = self.room_events_by_id(&pdu).await?;
        for id in pdu.prev_events.iter().chain(&pdu.auth_events) {
            if !known.contains_key(id) {
                return Err(Error::Forbidden(format!(
                    "event {id} is unknown in {room_id}"
                )));
            }
        }
        let rules = head.rules.clone();
        room::check_auth_by_auth_events(&rules, &pdu, |id| known.get(id).cloned())
            .map_err(|e| Error::Forbidden(e.to_string()))?;
        let keys = room::auth_types_for(
            &rules,
            &pdu.kind,
            &pdu.sender,
            pdu.state_key.as_deref(),
            &pdu.content,
        )
        .map_err(|e| Error::BadJson(e.to_string()))?;
        let state = self.head_state(&room_id, head, keys).await?;
        room::check_auth(
            &rules,
            &pdu,
            |id| known.get(id).cloned(),
            |kind, key| state.get(&(kind.clone(), key.to_owned())).cloned(),
        )
        .map_err(|e| Error::Forbidden(e.to_string()))?;

        let built_on: Vec<String> = head.extremities.iter().map(|e| e.to_string()).collect();
        let (room, own, origin) = (
            room_id.to_string(),
            self.server_name().to_string(),
            pdu.sender.server_name().to_string(),
        );
        let mut write = PendingWrite::new(pdu.clone(), None, None)?;
        let committed = self
            .db
            .write("persist_external_event", move |c| {
                let state_before = storage::events::state_after_of_prev_txn(c, &built_on)?;
                let (nid, _) = write.persist_txn(c, state_before)?;
                // A local user's event (an invite the invitee's server signed) is queued by the
                // outbox reading the stream, like every local event.
                let servers: Vec<String> = storage::room_servers::joined_servers(c, &room)?
                    .into_iter()
                    .filter(|s| *s != own && *s != origin && origin != own)
                    .collect();
                storage::federation_queue::enqueue_pdu_txn(c, &servers, nid)?;
                Ok((nid, state_before))
            })
            .await;
        // Every write built on the old head was queued before this one and so is committed:
        // the head can be read afresh from the database.
        *guard = None;
        drop(guard);
        let (nid, state_before) = committed?;
        tracing::debug!(room.id = %room_id, event.id = %pdu.event_id, stream_ordering = nid, "persisted external event");
        self.announce(&pdu, nid);
        Ok((nid, state_before))
    }

    /// The events of the PDU's room named by its `prev_events` and `auth_events` (and, from v12,
    /// the create event), those this server has.
    async fn room_events_by_id(&self, pdu: &Pdu) -> Result<HashMap<OwnedEventId, Arc<Pdu>>> {
        let mut ids: Vec<String> = pdu
            .prev_events
            .iter()
            .chain(&pdu.auth_events)
            .map(|e| e.to_string())
            .collect();
        if let Ok(create) = room::room_create_event_id(&pdu.room_id) {
            ids.push(create.to_string());
        }
        let room = pdu.room_id.to_string();
        let rows = self
            .db
            .read(move |c| {
                let mut rows = Vec::new();
                for id in ids {
                    if let Some(row) = storage::events::get_event(c, &id)?
                        && row.room_id == room
                    {
                        rows.push(row);
                    }
                }
                Ok(rows)
            })
            .await?;
        rows.iter()
            .map(|row| pdu_from_row(row).map(|p| (p.event_id.clone(), p)))
            .collect()
    }

    /// Wakes whoever waits for this event: the room's listeners, and the target of a membership
    /// change (an invitee is not in the room yet).
    pub(super) fn announce(&self, pdu: &Pdu, position: i64) {
        self.notifier.room_changed(&pdu.room_id, position);
        self.push_wake.notify_one();
        self.federation_wake.notify_one();
        self.appservice_wake.notify_one();
        if pdu.kind == ruma::events::TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
        {
            self.notifier.user_changed(&target, position);
        }
    }

    async fn pdu_by_id(&self, event_id: &EventId) -> Result<Arc<Pdu>> {
        let id = event_id.to_string();
        for _ in 0..100 {
            let id = id.clone();
            if let Some(row) = self
                .db
                .read(move |c| storage::events::get_event(c, &id))
                .await?
            {
                return pdu_from_row(&row);
            }
            // The first request with this transaction id is still being written.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Err(Error::Internal(format!(
            "event {event_id} was not persisted"
        )))
    }

    /// The state keys whose events authorise `template` from `sender`.
    pub(super) fn auth_keys(
        &self,
        rules: &RoomVersionRules,
        sender: &UserId,
        template: &PduTemplate,
    ) -> Result<Vec<(StateEventType, String)>> {
        let content = serde_json::value::to_raw_value(&template.content)
            .map_err(|e| Error::BadJson(format!("content is not serialisable: {e}")))?;
        room::auth_types_for(
            rules,
            &template.kind,
            sender,
            template.state_key.as_deref(),
            &content,
        )
        .map_err(|e| Error::BadJson(e.to_string()))
    }

    /// Builds and signs a PDU on `prev_events` and authorises it against `state` (which holds at
    /// least its auth keys and the create event). The inner `Err` is the authorisation rules'
    /// reason for refusing it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_authorised(
        &self,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        sender: &UserId,
        template: PduTemplate,
        prev_events: Vec<OwnedEventId>,
        depth: u64,
        state: &HashMap<(StateEventType, String), Arc<Pdu>>,
    ) -> Result<std::result::Result<Pdu, String>> {
        let keys = self.auth_keys(rules, sender, &template)?;
        let auth_events: Vec<OwnedEventId> = keys
            .iter()
            .filter(|(kind, _)| {
                *kind != StateEventType::RoomCreate
                    || !rules.authorization.room_create_event_id_as_room_id
            })
            .filter_map(|key| state.get(key))
            .map(|pdu| pdu.event_id.clone())
            .collect();
        let keypair = self.signing_key.keypair();
        let origin_server_ts = template
            .origin_server_ts
            .unwrap_or_else(MilliSecondsSinceUnixEpoch::now);
        let pdu = room::build_pdu(
            rules,
            Some(room_id),
            template,
            sender,
            prev_events,
            auth_events,
            depth,
            origin_server_ts,
            self.server_name(),
            keypair,
        )
        .map_err(pdu_error)?;
        let by_id: HashMap<&EventId, &Arc<Pdu>> =
            state.values().map(|p| (&*p.event_id, p)).collect();
        let checked = room::check_auth(
            rules,
            &pdu,
            |id| by_id.get(id).map(|p| Arc::clone(p)),
            |kind, key| state.get(&(kind.clone(), key.to_owned())).cloned(),
        );
        Ok(checked.map(|()| pdu).map_err(|e| e.to_string()))
    }

    /// The current state events for the given keys (and always the create event, which v12 rooms
    /// need for authorisation without listing it in auth_events).
    pub(super) async fn current_state_events(
        &self,
        room_id: &RoomId,
        mut keys: Vec<(StateEventType, String)>,
    ) -> Result<HashMap<(StateEventType, String), Arc<Pdu>>> {
        keys.push((StateEventType::RoomCreate, String::new()));
        let room = room_id.to_string();
        let rows = self
            .db
            .read(move |c| {
                let mut rows = Vec::new();
                for (kind, key) in keys {
                    if let Some(nid) =
                        state::current_state_event(c, &room, &kind.to_string(), &key)?
                        && let Some(row) = storage::events::get_event_by_nid(c, nid)?
                    {
                        rows.push(((kind, key), row));
                    }
                }
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(key, row)| Ok((key, pdu_from_row(&row)?)))
            .collect()
    }
}

/// A PDU ready to be written, with what else its transaction must record.
pub(super) struct PendingWrite {
    pdu: Arc<Pdu>,
    json: String,
    membership: Option<String>,
    relation: Option<(String, String)>,
    txn: Option<(String, String)>,
    redaction: Option<(String, String)>,
}

impl PendingWrite {
    pub(super) fn new(
        pdu: Arc<Pdu>,
        txn: Option<(String, String)>,
        redaction: Option<(String, String)>,
    ) -> Result<Self> {
        let json = serde_json::to_string(&pdu.json).map_err(|e| Error::Internal(e.to_string()))?;
        let membership = membership_of(&pdu);
        let relation = relation_of(&pdu);
        Ok(PendingWrite {
            pdu,
            json,
            membership,
            relation,
            txn,
            redaction,
        })
    }

    pub(super) fn prev_events(&self) -> Vec<String> {
        self.pdu.prev_events.iter().map(|e| e.to_string()).collect()
    }

    /// Writes the event inside an open transaction; returns its stream ordering and the state
    /// group after it.
    pub(super) fn persist_txn(
        &mut self,
        c: &rusqlite::Connection,
        state_before: Option<i64>,
    ) -> storage::Result<(i64, Option<i64>)> {
        let pdu = &self.pdu;
        let prev: Vec<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
        let kind = pdu.kind.to_string();
        let nid = storage::events::insert_event_txn(
            c,
            &NewEvent {
                event_id: pdu.event_id.as_str(),
                room_id: pdu.room_id.as_str(),
                sender: pdu.sender.as_str(),
                kind: &kind,
                state_key: pdu.state_key.as_deref(),
                membership: self.membership.as_deref(),
                depth: pdu.depth as i64,
                origin_server_ts: u64::from(pdu.origin_server_ts.get()) as i64,
                json: &self.json,
                prev_events: &prev,
                state_before,
                txn: self
                    .txn
                    .as_ref()
                    .map(|(device, txn_id)| (device.as_str(), txn_id.as_str())),
            },
        )?;
        let mut state_after = state_before;
        if let Some(state_key) = &pdu.state_key {
            let key = state::intern_key_txn(c, &kind, state_key)?;
            let group = state::create_group_txn(
                c,
                pdu.room_id.as_str(),
                state_before,
                &[(key, Some(nid))],
            )?;
            storage::events::set_state_after_txn(c, nid, group)?;
            state::set_current_state_txn(
                c,
                pdu.room_id.as_str(),
                &kind,
                state_key,
                nid,
                self.membership.as_deref(),
            )?;
            state_after = Some(group);
        }
        if let Some((relates_to, rel_type)) = &self.relation {
            storage::events::insert_relation_txn(
                c,
                pdu.event_id.as_str(),
                relates_to,
                rel_type,
                pdu.room_id.as_str(),
            )?;
        }
        if let Some((target, redacted_json)) = &self.redaction {
            storage::events::redact_event_txn(c, target, redacted_json, pdu.event_id.as_str())?;
        }
        Ok((nid, state_after))
    }
}

/// `content.membership` of a member event.
pub fn membership_of(pdu: &Pdu) -> Option<String> {
    if pdu.kind != TimelineEventType::RoomMember {
        return None;
    }
    let content: JsonValue = serde_json::from_str(pdu.content.get()).ok()?;
    content.get("membership")?.as_str().map(str::to_owned)
}

/// `content.m.relates_to` (event id, rel_type) of an event that relates to another.
fn relation_of(pdu: &Pdu) -> Option<(String, String)> {
    let content: JsonValue = serde_json::from_str(pdu.content.get()).ok()?;
    let relates = content.get("m.relates_to")?;
    let rel_type = relates.get("rel_type")?.as_str()?;
    let event_id = relates.get("event_id")?.as_str()?;
    Some((event_id.to_owned(), rel_type.to_owned()))
}

/// Maps the room core's refusal to build a PDU onto what the client sees.
pub fn pdu_error(error: room::PduError) -> Error {
    match &error {
        room::PduError::TooLarge => Error::TooLarge(error.to_string()),
        _ => Error::BadJson(error.to_string()),
    }
}
