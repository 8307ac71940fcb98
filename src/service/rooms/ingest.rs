//! The path of a PDU received over federation once its hashes and signatures are checked (see
//! `service/federation_in`). Under the room's lock: the authorization rules against the state its
//! own `auth_events` describe, then against the state before it (the resolved states after its
//! `prev_events`) — failing either, it is stored as rejected —, then against the room's current
//! state — failing that, it is stored soft-failed: never shown to clients, never a forward
//! extremity. Otherwise it joins the timeline: it becomes a forward extremity in place of its
//! `prev_events`, the current state is resolved over the forward extremities, and the room's
//! listeners are woken.
//!
//! Events it needs and does not have (`auth_events`, `prev_events`) are the caller's to fetch
//! first; here a missing one is a refusal, and nothing is stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId};
use serde_json::Value as JsonValue;

use super::super::{Error, Result, Services};
use super::append::{membership_of, pdu_from_row};
use super::ingest_chain::{ChainStart, IngestChain};
use crate::room::{self, Pdu, StateMap};
use crate::storage::events::NewEvent;
use crate::storage::received::{self, ReceivedKind, StoredEvent};
use crate::storage::{self, state};

/// What became of a received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// In the timeline, a forward extremity, visible to clients.
    Accepted,
    /// Stored, but not allowed by the current state: hidden, not built upon.
    SoftFailed(String),
    /// Stored as rejected by the authorization rules; the reason.
    Rejected(String),
    /// Not stored, because an event it needs is unknown here; says which.
    Refused(String),
}

/// ((type, state_key), event id) as storage reads them.
type StateRows = Vec<((String, String), String)>;

/// Everything read for one received PDU, in one read.
struct Loaded {
    /// The stored events among its auth events, prev events, every state below and their auth
    /// chains, by id.
    events: HashMap<String, StoredEvent>,
    /// Forward extremities and the state group after each.
    extremities: Vec<(String, Option<i64>)>,
    /// The states of the groups after its prev events and after the other extremities.
    groups: HashMap<i64, StateRows>,
    current: StateRows,
    /// In linear history, the state keys whose entries `current` holds (present or not): what
    /// the authorization of the event needed. `None` when the whole state was read.
    known_keys: Option<Vec<(String, String)>>,
}

/// How the state before the event is stored.
pub(super) enum StateBefore {
    /// A rejected event keeps none.
    None,
    /// The state after its one prev event (or after several that share it).
    Group(i64),
    /// A resolved state: a new group deriving from `parent` with these changes.
    Derived {
        parent: i64,
        changes: Vec<((String, String), Option<String>)>,
    },
}

impl Services {
    /// Authorises and stores a received PDU whose signatures and content hash were checked (or
    /// which was redacted for a wrong hash); see the module docs.
    /// `chain` carries what the PDUs of one transaction share (see `ingest_chain`).
    pub(crate) async fn ingest_pdu(
        &self,
        rules: &RoomVersionRules,
        pdu: Arc<Pdu>,
        chain: &mut IngestChain,
    ) -> Result<Ingested> {
        if let Some(ingested) = self.ingest_on_chain(rules, &pdu, chain)? {
            return Ok(ingested);
        }
        self.flush_chain(chain).await?;
        let room_id = pdu.room_id.clone();
        let mut guard = self.room_locks.lock(&room_id).await;
        // Local events written before this one may still be in flight while the room has a cached
        // head (whoever drops the head does so after their commit); wait for them, so the
        // extremities and state read below include them.
        if guard.is_some() {
            self.db.write("ingest_barrier", |_| Ok(())).await?;
        }
        let loaded = self.load_for_ingest(rules, &pdu).await?;
        // Another transaction may have brought the same event meanwhile.
        if let Some(stored) = loaded.events.get(pdu.event_id.as_str()) {
            return Ok(match &stored.rejected_reason {
                Some(reason) => Ingested::Rejected(reason.clone()),
                None if stored.soft_failed => Ingested::SoftFailed("soft-failed before".into()),
                None => Ingested::Accepted,
            });
        }
        let events = parse_events(&loaded.events, &pdu)?;
        let fetch = |id: &EventId| events.get(id).cloned();

        let missing_auth: Vec<&OwnedEventId> = pdu
            .auth_events
            .iter()
            .filter(|id| !events.contains_key(*id))
            .collect();
        if !missing_auth.is_empty() {
            return Ok(Ingested::Refused(format!(
                "auth events unknown here: {}",
                join(missing_auth)
            )));
        }
        if let Err(e) = room::check_auth_by_auth_events(rules, &pdu, fetch) {
            let reason = format!("not allowed by its auth events: {e}");
            return self.store_rejected(&pdu, reason).await;
        }

        let missing_prev: Vec<&OwnedEventId> = pdu
            .prev_events
            .iter()
            .filter(|id| !loaded.events.contains_key(id.as_str()))
            .collect();
        if !missing_prev.is_empty() {
            return Ok(Ingested::Refused(format!(
                "prev events unknown here: {}",
                join(missing_prev)
            )));
        }
        let mut prev_groups: Vec<i64> = Vec::new();
        for prev in &pdu.prev_events {
            let stored = &loaded.events[prev.as_str()];
            if stored.rejected_reason.is_none()
                && let Some(group) = stored.row.state_after
                && !prev_groups.contains(&group)
            {
                prev_groups.push(group);
            }
        }
        let Some(&first_group) = prev_groups.first() else {
            return Ok(Ingested::Refused(
                "none of its prev events has a state here".into(),
            ));
        };
        let prev_states: Vec<StateMap<OwnedEventId>> = prev_groups
            .iter()
            .map(|g| state_map(loaded.groups.get(g).map(Vec::as_slice).unwrap_or(&[])))
            .collect::<Result<_>>()?;
        let state_before = match &prev_states[..] {
            [only] => only.clone(),
            sets => room::resolve_state(rules, sets, fetch)
                .map_err(|e| Error::Internal(format!("state resolution failed: {e}")))?,
        };
        let lookup = |state: &StateMap<OwnedEventId>, kind: &StateEventType, key: &str| {
            state
                .get(&(kind.clone(), key.to_owned()))
                .and_then(|id| events.get(id).cloned())
        };
        if let Err(e) = room::check_auth(rules, &pdu, fetch, |k, s| lookup(&state_before, k, s)) {
            let reason = format!("not allowed by the state before it: {e}");
            return self.store_rejected(&pdu, reason).await;
        }
        let stored_before = if prev_states.len() == 1 {
            StateBefore::Group(first_group)
        } else {
            StateBefore::Derived {
                parent: first_group,
                changes: diff(&prev_states[0], &state_before),
            }
        };

        let current = state_map(&loaded.current)?;
        if let Err(e) = room::check_auth(rules, &pdu, fetch, |k, s| lookup(&current, k, s)) {
            let reason = format!("not allowed by the current state: {e}");
            tracing::info!(room.id = %room_id, event.id = %pdu.event_id, %reason, "soft-failed a received event");
            self.store_received(&pdu, ReceivedKind::SoftFailed, stored_before, Vec::new())
                .await?;
            drop(guard);
            return Ok(Ingested::SoftFailed(reason));
        }

        let mut state_after = state_before;
        if let Some(key) = pdu.state_map_key() {
            state_after.insert(key, pdu.event_id.clone());
        }
        let mut sets = vec![state_after];
        for (extremity, group) in &loaded.extremities {
            if pdu.prev_events.iter().any(|p| p.as_str() == extremity) {
                continue;
            }
            if let Some(rows) = group.and_then(|g| loaded.groups.get(&g)) {
                sets.push(state_map(rows)?);
            }
        }
        let new_current = match &sets[..] {
            [only] => only.clone(),
            sets => room::resolve_state(rules, sets, fetch)
                .map_err(|e| Error::Internal(format!("state resolution failed: {e}")))?,
        };
        let changes = diff(&current, &new_current);
        let redaction = self.redaction_to_apply(rules, &pdu).await?;
        // A message on the only forward extremity: the PDUs after it in the transaction may
        // follow it on the chain.
        let chain_group = match (&stored_before, &loaded.known_keys) {
            (StateBefore::Group(group), Some(_))
                if pdu.state_key.is_none() && redaction.is_none() =>
            {
                Some(*group)
            }
            _ => None,
        };
        let nid = self
            .store_received_with(
                &pdu,
                ReceivedKind::Timeline,
                stored_before,
                changes,
                redaction,
            )
            .await?;
        // The cached head (extremities, depth, state) no longer holds; the next local event
        // reads it afresh.
        *guard = None;
        if let (Some(group), Some(keys)) = (chain_group, loaded.known_keys) {
            chain.start(ChainStart {
                guard,
                rules: rules.clone(),
                last: pdu.clone(),
                group,
                events,
                current,
                known_keys: keys,
            });
        } else {
            drop(guard);
        }
        tracing::debug!(room.id = %room_id, event.id = %pdu.event_id, stream_ordering = nid, "persisted received event");
        self.announce(&pdu, nid);
        Ok(Ingested::Accepted)
    }

    /// Reads what `ingest_pdu` needs about `pdu`'s room and neighbours.
    async fn load_for_ingest(&self, rules: &RoomVersionRules, pdu: &Pdu) -> Result<Loaded> {
        let room = pdu.room_id.to_string();
        let mut wanted: Vec<String> = pdu
            .auth_events
            .iter()
            .chain(&pdu.prev_events)
            .chain([&pdu.event_id])
            .map(ToString::to_string)
            .collect();
        if rules.authorization.room_create_event_id_as_room_id
            && let Ok(create) = room::room_create_event_id(&pdu.room_id)
        {
            wanted.push(create.to_string());
        }
        let prev: HashSet<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
        let auth_keys: Option<Vec<(String, String)>> = room::auth_types_for(
            rules,
            &pdu.kind,
            &pdu.sender,
            pdu.state_key.as_deref(),
            &pdu.content,
        )
        .ok()
        .map(|keys| {
            let mut keys: Vec<(String, String)> = keys
                .into_iter()
                .map(|(kind, key)| (kind.to_string(), key))
                .collect();
            keys.push(("m.room.create".into(), String::new()));
            keys.extend(
                pdu.state_map_key()
                    .map(|(kind, key)| (kind.to_string(), key)),
            );
            keys.sort_unstable();
            keys.dedup();
            keys
        });
        self.db
            .read(move |c| {
                let mut events: HashMap<String, StoredEvent> = received::stored_events(c, &wanted)?
                    .into_iter()
                    .map(|e| (e.row.event_id.clone(), e))
                    .collect();
                let extremities = received::extremities_with_state(c, &room)?;
                let mut group_ids: Vec<i64> = events
                    .values()
                    .filter(|e| prev.contains(&e.row.event_id) && e.rejected_reason.is_none())
                    .filter_map(|e| e.row.state_after)
                    .collect();
                group_ids.extend(extremities.iter().filter_map(|(_, g)| *g));
                group_ids.sort_unstable();
                group_ids.dedup();
                let forks = extremities.iter().any(|(id, _)| !prev.contains(id));
                let (groups, current, known_keys) = match (&auth_keys, &group_ids[..]) {
                    // Linear history: the state before the event is the current state, and the
                    // rules only read the auth keys of it; the event changes at most its own key.
                    (Some(keys), [group]) if !forks => {
                        let (in_group, in_current) = auth_state_txn(c, &room, *group, keys)?;
                        let groups = HashMap::from([(*group, in_group)]);
                        (groups, in_current, Some(keys.clone()))
                    }
                    _ => {
                        let mut groups = HashMap::new();
                        for group in &group_ids {
                            groups.insert(*group, received::state_ids_of_group(c, *group)?);
                        }
                        (groups, received::current_state_ids(c, &room)?, None)
                    }
                };

                let mut state_ids: Vec<String> = groups
                    .values()
                    .chain(std::iter::once(&current))
                    .flatten()
                    .map(|(_, id)| id.clone())
                    .filter(|id| !events.contains_key(id))
                    .collect();
                state_ids.sort_unstable();
                state_ids.dedup();
                for event in received::stored_events(c, &state_ids)? {
                    events.insert(event.row.event_id.clone(), event);
                }
                // State resolution walks auth chains: read them when the prev events' states
                // differ or the event forks the room.
                if group_ids.len() > 1 || forks {
                    let seeds: Vec<i64> = events.values().map(|e| e.row.nid).collect();
                    let chain: Vec<String> = storage::dag::auth_chain(c, &room, &seeds)?
                        .into_iter()
                        .map(|row| row.event_id)
                        .filter(|id| !events.contains_key(id))
                        .collect();
                    for event in received::stored_events(c, &chain)? {
                        events.insert(event.row.event_id.clone(), event);
                    }
                }
                Ok(Loaded {
                    events,
                    extremities,
                    groups,
                    current,
                    known_keys,
                })
            })
            .await
            .map_err(Into::into)
    }

    async fn store_rejected(&self, pdu: &Arc<Pdu>, reason: String) -> Result<Ingested> {
        tracing::info!(room.id = %pdu.room_id, event.id = %pdu.event_id, %reason, "rejected a received event");
        self.store_received(
            pdu,
            ReceivedKind::Rejected(reason.clone()),
            StateBefore::None,
            Vec::new(),
        )
        .await?;
        Ok(Ingested::Rejected(reason))
    }

    /// For an accepted `m.room.redaction`: the target's id and redacted form, when the target is
    /// stored in this room and the redaction may take effect (the sender has the `redact` power
    /// level, or the target was sent from the same server). A redaction whose target is unknown
    /// here, or arrives later, takes no effect.
    async fn redaction_to_apply(
        &self,
        rules: &RoomVersionRules,
        pdu: &Arc<Pdu>,
    ) -> Result<Option<(String, String)>> {
        let Some(target_id) = pdu
            .redacts
            .as_ref()
            .filter(|_| pdu.kind == TimelineEventType::RoomRedaction)
        else {
            return Ok(None);
        };
        let id = target_id.to_string();
        let Some(row) = self
            .db
            .read(move |c| storage::events::get_event(c, &id))
            .await?
            .filter(|row| row.room_id == pdu.room_id.as_str())
        else {
            return Ok(None);
        };
        let target = pdu_from_row(&row)?;
        let same_server = target.sender.server_name() == pdu.sender.server_name();
        if !same_server {
            let levels = self.power_levels(&pdu.room_id).await?;
            let needed = levels
                .get("redact")
                .and_then(JsonValue::as_i64)
                .unwrap_or(50);
            if self.user_power(&pdu.room_id, &levels, &pdu.sender).await? < needed {
                return Ok(None);
            }
        }
        let because = JsonValue::Object(pdu.to_client_event());
        let redacted = room::redact_pdu(&target, rules, Some(because))
            .map_err(|e| Error::Internal(format!("cannot redact {target_id}: {e}")))?;
        let json = redacted
            .canonical_json()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Some((target_id.to_string(), json)))
    }

    /// Writes a received event of `kind`; for the timeline, also the `current` state changes.
    /// Returns its stream ordering.
    async fn store_received(
        &self,
        pdu: &Arc<Pdu>,
        kind: ReceivedKind,
        state_before: StateBefore,
        current: Vec<((String, String), Option<String>)>,
    ) -> Result<i64> {
        self.store_received_with(pdu, kind, state_before, current, None)
            .await
    }

    /// `store_received`, also replacing the stored copy of a redacted event (target id and its
    /// redacted JSON).
    async fn store_received_with(
        &self,
        pdu: &Arc<Pdu>,
        kind: ReceivedKind,
        state_before: StateBefore,
        current: Vec<((String, String), Option<String>)>,
        redaction: Option<(String, String)>,
    ) -> Result<i64> {
        let write = self.received_write(pdu, kind, state_before, current, redaction)?;
        Ok(write.await?)
    }

    /// Queues the write of a received event (see `store_received_with`) and returns what
    /// resolves to its stream ordering once committed.
    pub(super) fn received_write(
        &self,
        pdu: &Arc<Pdu>,
        kind: ReceivedKind,
        state_before: StateBefore,
        current: Vec<((String, String), Option<String>)>,
        redaction: Option<(String, String)>,
    ) -> Result<PendingWrite> {
        let pdu = pdu.clone();
        let json = pdu
            .canonical_json()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let membership = membership_of(&pdu);
        let relation = relation_of(&pdu);
        let write = self.db.submit("persist_received_event", move |c| {
            let room = pdu.room_id.as_str();
            let state_before = match state_before {
                StateBefore::None => None,
                StateBefore::Group(group) => Some(group),
                StateBefore::Derived { parent, changes } => {
                    let rows = state_rows_txn(c, &changes)?;
                    Some(state::create_group_txn(c, room, Some(parent), &rows)?)
                }
            };
            let prev: Vec<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
            let event_kind = pdu.kind.to_string();
            let nid = received::insert_received_event_txn(
                c,
                &NewEvent {
                    event_id: pdu.event_id.as_str(),
                    room_id: room,
                    sender: pdu.sender.as_str(),
                    kind: &event_kind,
                    state_key: pdu.state_key.as_deref(),
                    membership: membership.as_deref(),
                    depth: pdu.depth as i64,
                    origin_server_ts: u64::from(pdu.origin_server_ts.get()) as i64,
                    json: &json,
                    prev_events: &prev,
                    state_before,
                    txn: None,
                },
                &kind,
            )?;
            if matches!(kind, ReceivedKind::Rejected(_)) {
                return Ok(nid);
            }
            if let Some(state_key) = &pdu.state_key {
                let key = state::intern_key_txn(c, &event_kind, state_key)?;
                let group = state::create_group_txn(c, room, state_before, &[(key, Some(nid))])?;
                storage::events::set_state_after_txn(c, nid, group)?;
            }
            if kind != ReceivedKind::Timeline {
                return Ok(nid);
            }
            let own = (pdu.event_id.to_string(), nid, membership.clone());
            let ids: Vec<String> = current.iter().filter_map(|(_, id)| id.clone()).collect();
            let mut nids = received::event_nids(c, &ids)?;
            nids.insert(own.0, (own.1, own.2));
            for ((kind, state_key), id) in &current {
                match id.as_ref().and_then(|id| nids.get(id)) {
                    Some((event_nid, membership)) => state::set_current_state_txn(
                        c,
                        room,
                        kind,
                        state_key,
                        *event_nid,
                        membership.as_deref(),
                    )?,
                    None => received::remove_current_state_txn(c, room, kind, state_key)?,
                }
            }
            if let Some((target, redacted_json)) = &redaction {
                storage::events::redact_event_txn(c, target, redacted_json, pdu.event_id.as_str())?;
            }
            if let Some((relates_to, rel_type)) = &relation {
                storage::events::insert_relation_txn(
                    c,
                    pdu.event_id.as_str(),
                    relates_to,
                    rel_type,
                    room,
                )?;
            }
            Ok(nid)
        });
        Ok(Box::pin(write))
    }
}

/// A queued write of a received event: its stream ordering once committed.
pub(super) type PendingWrite =
    std::pin::Pin<Box<dyn std::future::Future<Output = storage::Result<i64>> + Send>>;

/// The entries of `keys` in state group `group` and in the room's current state.
fn auth_state_txn(
    c: &rusqlite::Connection,
    room: &str,
    group: i64,
    keys: &[(String, String)],
) -> storage::Result<(StateRows, StateRows)> {
    let id_of = |nid: Option<i64>| -> storage::Result<Option<String>> {
        Ok(match nid {
            Some(nid) => storage::events::get_event_by_nid(c, nid)?.map(|row| row.event_id),
            None => None,
        })
    };
    let (mut in_group, mut in_current) = (Vec::new(), Vec::new());
    for (kind, state_key) in keys {
        let key = (kind.clone(), state_key.clone());
        if let Some(key_nid) = state::key_nid(c, kind, state_key)?
            && let Some(id) = id_of(state::lookup(c, group, key_nid)?)?
        {
            in_group.push((key.clone(), id));
        }
        if let Some(id) = id_of(state::current_state_event(c, room, kind, state_key)?)? {
            in_current.push((key, id));
        }
    }
    Ok((in_group, in_current))
}

/// Interned keys and event stream orderings of state changes, inside a write.
fn state_rows_txn(
    c: &rusqlite::Connection,
    changes: &[((String, String), Option<String>)],
) -> storage::Result<Vec<(i64, Option<i64>)>> {
    let ids: Vec<String> = changes.iter().filter_map(|(_, id)| id.clone()).collect();
    let nids = received::event_nids(c, &ids)?;
    let mut rows = Vec::with_capacity(changes.len());
    for ((kind, state_key), id) in changes {
        let key = state::intern_key_txn(c, kind, state_key)?;
        let event = match id {
            Some(id) => Some(nids.get(id).map(|(nid, _)| *nid).ok_or_else(|| {
                storage::StorageError::Aborted(format!("state event {id} is not stored"))
            })?),
            None => None,
        };
        rows.push((key, event));
    }
    Ok(rows)
}

/// The stored events as PDUs (rejected ones marked), plus the received one itself.
fn parse_events(
    stored: &HashMap<String, StoredEvent>,
    pdu: &Arc<Pdu>,
) -> Result<HashMap<OwnedEventId, Arc<Pdu>>> {
    let mut events = HashMap::with_capacity(stored.len() + 1);
    for event in stored.values() {
        let mut parsed = pdu_from_row(&event.row)?;
        if event.rejected_reason.is_some() {
            Arc::make_mut(&mut parsed).rejected = true;
        }
        events.insert(parsed.event_id.clone(), parsed);
    }
    events.insert(pdu.event_id.clone(), pdu.clone());
    Ok(events)
}

fn state_map(rows: &[((String, String), String)]) -> Result<StateMap<OwnedEventId>> {
    rows.iter()
        .map(|((kind, key), id)| {
            let id = EventId::parse(id)
                .map_err(|e| Error::Internal(format!("stored event id {id}: {e}")))?;
            Ok(((StateEventType::from(kind.as_str()), key.clone()), id))
        })
        .collect()
}

/// The changes that turn `from` into `to`, as storage writes them.
fn diff(
    from: &StateMap<OwnedEventId>,
    to: &StateMap<OwnedEventId>,
) -> Vec<((String, String), Option<String>)> {
    let name = |(kind, key): &(StateEventType, String)| (kind.to_string(), key.clone());
    let mut changes: Vec<_> = to
        .iter()
        .filter(|(key, id)| from.get(*key) != Some(*id))
        .map(|(key, id)| (name(key), Some(id.to_string())))
        .collect();
    changes.extend(
        from.keys()
            .filter(|key| !to.contains_key(*key))
            .map(|key| (name(key), None)),
    );
    changes.sort();
    changes
}

/// `content.m.relates_to` (event id, rel_type) of an event that relates to another.
fn relation_of(pdu: &Pdu) -> Option<(String, String)> {
    if pdu.kind == TimelineEventType::RoomRedaction {
        return None;
    }
    let content: JsonValue = serde_json::from_str(pdu.content.get()).ok()?;
    let relates = content.get("m.relates_to")?;
    let rel_type = relates.get("rel_type")?.as_str()?;
    let event_id = relates.get("event_id")?.as_str()?;
    Some((event_id.to_owned(), rel_type.to_owned()))
}

fn join<'a>(ids: impl IntoIterator<Item = &'a OwnedEventId>) -> String {
    ids.into_iter()
        .map(|id| id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
