//! Events fetched from another server to fill in what a received PDU needs and this server does
//! not have: its unknown `auth_events` (asked with `/event_auth`), and the state at a gap in the
//! DAG that `/get_missing_events` could not close (`/state_ids` at the missing prev event, then
//! each event it names and this server lacks, with `/event`).
//!
//! Every fetched event goes through the checks on receipt (format, reference hash, signatures, a
//! wrong content hash keeping the redacted form) and must be allowed by its own auth events
//! (fetched or stored); those that pass are stored as outliers, in one write, outside the
//! timeline. A missing prev event is also checked against the state at it and stored with that
//! state, so that the PDU after the gap can be authorised against the state before it.
//! Nothing here extends the timeline or wakes a client.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::event::{get_event, get_room_state_ids};
use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, RoomId, ServerName};
use serde_json::value::RawValue as RawJsonValue;

use super::super::{Error, Result, Services};
use super::append::{membership_of, pdu_from_row};
use super::remote_join::with_new_event;
use crate::room::{self, Pdu, StateMap};
use crate::storage::{self, received, state};

/// How many events one gap may need fetched one by one with `/event`; a state larger than this
/// that is unknown here is not fetched (the PDU after the gap is refused).
const MAX_EVENTS_PER_GAP: usize = 2_000;
/// `/event` requests in flight at once.
const CONCURRENT_FETCHES: usize = 8;

impl Services {
    /// Fetches `pdu`'s auth events that are unknown here from `origin` (`/event_auth`), and
    /// stores those that pass the checks as outliers. What cannot be had is left for the ingest
    /// to refuse.
    pub(crate) async fn fetch_missing_auth_events(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        pdu: &Pdu,
    ) -> Result<()> {
        let unknown = self.unknown_events(pdu.auth_events.iter().cloned()).await?;
        if unknown.is_empty() {
            return Ok(());
        }
        let request =
            get_event_authorization::v1::Request::new(pdu.room_id.clone(), pdu.event_id.clone());
        let chain = match self.federation.send(origin, request).await {
            Ok(response) => response.auth_chain,
            Err(e) => {
                tracing::info!(server.name = %origin, event.id = %pdu.event_id, error = %e, "cannot fetch unknown auth events");
                return Ok(());
            }
        };
        self.store_fetched_outliers(rules, &pdu.room_id, &chain, None)
            .await?;
        Ok(())
    }

    /// Fills the gap before `prev`, a prev event of a received PDU that could not be had with
    /// `/get_missing_events`: the state at it (`/state_ids`), the events of that state and their
    /// auth chain that are unknown here, and `prev` itself (`/event`), stored as outliers, `prev`
    /// with the state after it.
    pub(crate) async fn fetch_state_at_gap(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        prev: &EventId,
    ) -> Result<()> {
        let request = get_room_state_ids::v1::Request::new(prev.to_owned(), room_id.to_owned());
        let ids = match self.federation.send(origin, request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::info!(server.name = %origin, event.id = %prev, error = %e, "cannot fetch the state at a gap");
                return Ok(());
            }
        };
        let wanted = ids
            .pdu_ids
            .iter()
            .chain(&ids.auth_chain_ids)
            .cloned()
            .chain([prev.to_owned()]);
        let unknown = self.unknown_events(wanted).await?;
        if unknown.len() > MAX_EVENTS_PER_GAP {
            tracing::info!(server.name = %origin, event.id = %prev, events = unknown.len(), "the state at a gap is too large to fetch");
            return Ok(());
        }
        let fetched: Vec<Box<RawJsonValue>> = futures_util::stream::iter(unknown)
            .map(|id| async move {
                let request = get_event::v1::Request::new(id.clone());
                match self.federation.send(origin, request).await {
                    Ok(response) => Some(response.pdu),
                    Err(e) => {
                        tracing::info!(server.name = %origin, event.id = %id, error = %e, "cannot fetch an event of the state at a gap");
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENT_FETCHES)
            .filter_map(|pdu| async move { pdu })
            .collect()
            .await;
        let at_gap = GapState {
            prev: prev.to_owned(),
            state_ids: ids.pdu_ids,
        };
        self.store_fetched_outliers(rules, room_id, &fetched, Some(at_gap))
            .await
    }

    /// The events among `ids` that are not stored here.
    pub(crate) async fn unknown_events(
        &self,
        ids: impl Iterator<Item = OwnedEventId>,
    ) -> Result<Vec<OwnedEventId>> {
        let ids: Vec<OwnedEventId> = ids.collect::<HashSet<_>>().into_iter().collect();
        let wanted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let stored: HashSet<String> = self
            .db
            .read(move |c| received::stored_events(c, &wanted))
            .await?
            .into_iter()
            .map(|event| event.row.event_id)
            .collect();
        Ok(ids
            .into_iter()
            .filter(|id| !stored.contains(id.as_str()))
            .collect())
    }

    /// Checks fetched events (see the module docs) and stores those that pass as outliers, in
    /// one write; with `gap`, also the state after its prev event.
    async fn store_fetched_outliers(
        &self,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        raws: &[Box<RawJsonValue>],
        gap: Option<GapState>,
    ) -> Result<()> {
        let mut fetched: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for raw in raws {
            if let Some(pdu) = self.check_remote_pdu(rules, room_id, raw).await? {
                fetched.insert(pdu.event_id.clone(), Arc::new(pdu));
            }
        }
        // The stored events the fetched ones cite (and the state at the gap names), for the auth
        // checks.
        let mut cited: Vec<String> = fetched
            .values()
            .flat_map(|pdu| pdu.auth_events.iter())
            .chain(gap.iter().flat_map(|g| g.state_ids.iter()))
            .filter(|id| !fetched.contains_key(*id))
            .map(ToString::to_string)
            .collect();
        // In room versions whose room id names the create event, auth events leave it out.
        if rules.authorization.room_create_event_id_as_room_id
            && let Ok(create) = room::room_create_event_id(room_id)
        {
            cited.push(create.to_string());
        }
        cited.sort_unstable();
        cited.dedup();
        let stored = self
            .db
            .read(move |c| received::stored_events(c, &cited))
            .await?;
        let mut events: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for event in stored {
            let mut pdu = pdu_from_row(&event.row)?;
            if event.rejected_reason.is_some() {
                Arc::make_mut(&mut pdu).rejected = true;
            }
            events.insert(pdu.event_id.clone(), pdu);
        }
        let mut ordered: Vec<Arc<Pdu>> = fetched.values().cloned().collect();
        ordered.sort_by_key(|pdu| pdu.depth);
        let mut accepted: Vec<Arc<Pdu>> = Vec::with_capacity(ordered.len());
        for pdu in ordered {
            // Oldest first, so an event's auth events are judged before it.
            let verdict = match pdu.auth_events.iter().find(|id| !events.contains_key(*id)) {
                Some(missing) => Err(format!("its auth event {missing} is unknown")),
                None => {
                    let fetch = |id: &EventId| events.get(id).cloned();
                    room::check_auth_by_auth_events(rules, &pdu, fetch).map_err(|e| e.to_string())
                }
            };
            match verdict {
                Ok(()) => {
                    events.insert(pdu.event_id.clone(), pdu.clone());
                    accepted.push(pdu);
                }
                Err(error) => {
                    tracing::info!(room.id = %room_id, event.id = %pdu.event_id, %error, "a fetched event is not allowed by its auth events; not stored");
                }
            }
        }
        let gap_state = match gap {
            Some(gap) => self.state_after_gap(rules, &events, gap)?,
            None => None,
        };
        if accepted.is_empty() {
            return Ok(());
        }
        let count = accepted.len();
        let room = room_id.to_string();
        self.db
            .write("store_fetched_outliers", move |c| {
                let mut nids: HashMap<String, i64> = HashMap::new();
                for pdu in &accepted {
                    let json = pdu.canonical_json().map_err(|e| {
                        storage::StorageError::Aborted(format!("event is not JSON: {e}"))
                    })?;
                    let membership = membership_of(pdu);
                    let nid = with_new_event(pdu, &json, membership.as_deref(), None, |e| {
                        storage::remote_rooms::insert_outlier_txn(c, e)
                    })?;
                    nids.insert(pdu.event_id.to_string(), nid);
                }
                if let Some((prev, after)) = gap_state
                    && let Some(prev_nid) = nids.get(prev.as_str())
                {
                    let ids: Vec<String> = after.values().map(ToString::to_string).collect();
                    let stored = received::event_nids(c, &ids)?;
                    let mut rows = Vec::with_capacity(after.len());
                    for ((kind, key), id) in &after {
                        if let Some((nid, _)) = stored.get(id.as_str()) {
                            let key = state::intern_key_txn(c, &kind.to_string(), key)?;
                            rows.push((key, Some(*nid)));
                        }
                    }
                    rows.sort_unstable();
                    let group = state::create_group_txn(c, &room, None, &rows)?;
                    storage::events::set_state_after_txn(c, *prev_nid, group)?;
                }
                Ok(())
            })
            .await?;
        tracing::debug!(room.id = %room_id, events = count, "stored fetched events as outliers");
        Ok(())
    }

    /// The state after the prev event at a gap, when it was fetched, passes the authorization
    /// rules against the state at it, and every event of that state is known: `(prev, state)`.
    fn state_after_gap(
        &self,
        rules: &RoomVersionRules,
        events: &HashMap<OwnedEventId, Arc<Pdu>>,
        gap: GapState,
    ) -> Result<Option<(OwnedEventId, StateMap<OwnedEventId>)>> {
        let Some(prev) = events.get(&gap.prev) else {
            return Ok(None);
        };
        let mut before = StateMap::new();
        for id in &gap.state_ids {
            let Some(key) = events.get(id).and_then(|pdu| pdu.state_map_key()) else {
                tracing::info!(event.id = %gap.prev, missing = %id, "the state at a gap is incomplete");
                return Ok(None);
            };
            before.insert(key, id.clone());
        }
        if !before.contains_key(&(StateEventType::RoomCreate, String::new())) {
            return Err(Error::RemoteServer(format!(
                "the state at {} has no create event",
                gap.prev
            )));
        }
        let fetch = |id: &EventId| events.get(id).cloned();
        let lookup = |kind: &StateEventType, key: &str| {
            before
                .get(&(kind.clone(), key.to_owned()))
                .and_then(|id| events.get(id).cloned())
        };
        if let Err(e) = room::check_auth(rules, prev, fetch, lookup) {
            tracing::info!(event.id = %gap.prev, error = %e, "the event at a gap is not allowed by the state at it");
            return Ok(None);
        }
        let mut after = before;
        if let Some(key) = prev.state_map_key() {
            after.insert(key, prev.event_id.clone());
        }
        Ok(Some((prev.event_id.clone(), after)))
    }
}

/// The state another server says a missing prev event was sent in.
struct GapState {
    prev: OwnedEventId,
    state_ids: Vec<OwnedEventId>,
}
