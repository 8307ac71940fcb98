//! The common case of an incoming transaction, made cheap: a run of PDUs of one room, each on the
//! one before, none changing the state (another server's users talking). Once `ingest` has
//! accepted a message that was the room's only forward extremity, it starts a chain: it keeps the
//! room's lock, the state the message was authorised against (the auth keys it read) and the
//! events of that state. A next PDU that follows the tip directly, is no state event or
//! redaction, cites only known auth events and needs only known state keys is authorised from
//! memory (by its auth events and by the current state, which in linear history is also the
//! state before it) and its write is queued without waiting for the commit. Anything else — a
//! PDU that fails a check, forks, changes state or needs more — ends the chain: the queued
//! writes are awaited and announced, the lock is released, and the PDU takes the full path.
//!
//! The transaction is answered only after `flush_chain`, so every PDU acknowledged to the origin
//! is committed; the writer commits the queued writes together.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, RoomId};
use tokio::sync::OwnedMutexGuard;

use super::super::{Result, Services};
use super::head::RoomHead;
use super::ingest::{Ingested, PendingWrite, StateBefore};
use crate::room::{self, Pdu, StateMap};
use crate::storage::received::ReceivedKind;

/// What the PDUs of one transaction carry from one to the next (see the module docs).
#[derive(Default)]
pub struct IngestChain {
    tip: Option<ChainTip>,
    /// Accepted PDUs whose writes are queued, in order.
    pending: Vec<(Arc<Pdu>, PendingWrite)>,
}

/// What `ingest` hands over when it starts a chain.
pub(super) struct ChainStart {
    pub guard: OwnedMutexGuard<Option<RoomHead>>,
    pub rules: RoomVersionRules,
    pub last: Arc<Pdu>,
    /// The state group before (and, for a message, after) `last`.
    pub group: i64,
    /// The events `last` was authorised with: its auth events and the state entries read.
    pub events: HashMap<OwnedEventId, Arc<Pdu>>,
    /// The current state's entries for `known_keys`.
    pub current: StateMap<OwnedEventId>,
    pub known_keys: Vec<(String, String)>,
}

struct ChainTip {
    /// Held until the chain ends: nothing else extends the room meanwhile.
    _guard: OwnedMutexGuard<Option<RoomHead>>,
    rules: RoomVersionRules,
    room_id: ruma::OwnedRoomId,
    last: OwnedEventId,
    group: i64,
    events: HashMap<OwnedEventId, Arc<Pdu>>,
    current: StateMap<OwnedEventId>,
    known_keys: HashSet<(StateEventType, String)>,
}

impl IngestChain {
    pub(super) fn start(&mut self, start: ChainStart) {
        self.tip = Some(ChainTip {
            _guard: start.guard,
            rules: start.rules,
            room_id: start.last.room_id.clone(),
            last: start.last.event_id.clone(),
            group: start.group,
            events: start.events,
            current: start.current,
            known_keys: start
                .known_keys
                .into_iter()
                .map(|(kind, key)| (StateEventType::from(kind), key))
                .collect(),
        });
    }

    /// The rules of `room_id` when the chain is in that room.
    pub fn rules_for(&self, room_id: &RoomId) -> Option<&RoomVersionRules> {
        self.tip
            .as_ref()
            .filter(|tip| tip.room_id == room_id)
            .map(|tip| &tip.rules)
    }

    /// Whether a PDU of `room_id` with these `prev_events` directly follows the chain's tip: it
    /// is new here (its only prev event was stored just now, under the room's lock) and its
    /// origin was allowed to send into the room for the tip.
    pub fn follows(&self, room_id: &RoomId, prev_events: &[&str]) -> bool {
        self.tip
            .as_ref()
            .is_some_and(|tip| tip.room_id == room_id && prev_events == [tip.last.as_str()])
    }
}

impl Services {
    /// Accepts `pdu` on the chain when it qualifies (see the module docs); `None` sends it down
    /// the full path.
    pub(super) fn ingest_on_chain(
        &self,
        rules: &RoomVersionRules,
        pdu: &Arc<Pdu>,
        chain: &mut IngestChain,
    ) -> Result<Option<Ingested>> {
        let Some(tip) = chain.tip.as_mut() else {
            return Ok(None);
        };
        if tip.room_id != pdu.room_id
            || pdu.prev_events.len() != 1
            || pdu.prev_events[0] != tip.last
            || pdu.state_key.is_some()
            || pdu.kind == TimelineEventType::RoomRedaction
            || !pdu.auth_events.iter().all(|id| tip.events.contains_key(id))
        {
            return Ok(None);
        }
        let Ok(keys) = room::auth_types_for(rules, &pdu.kind, &pdu.sender, None, &pdu.content)
        else {
            return Ok(None);
        };
        if !keys.iter().all(|key| tip.known_keys.contains(key)) {
            return Ok(None);
        }
        let fetch = |id: &EventId| tip.events.get(id).cloned();
        let lookup = |kind: &StateEventType, key: &str| {
            tip.current
                .get(&(kind.clone(), key.to_owned()))
                .and_then(|id| tip.events.get(id).cloned())
        };
        if room::check_auth_by_auth_events(rules, pdu, fetch).is_err()
            || room::check_auth(rules, pdu, fetch, lookup).is_err()
        {
            return Ok(None);
        }
        let write = self.received_write(
            pdu,
            ReceivedKind::Timeline,
            StateBefore::Group(tip.group),
            Vec::new(),
            None,
        )?;
        tip.last = pdu.event_id.clone();
        chain.pending.push((pdu.clone(), write));
        Ok(Some(Ingested::Accepted))
    }

    /// Ends the chain: waits for its queued writes, announces them in order, releases the room.
    pub(crate) async fn flush_chain(&self, chain: &mut IngestChain) -> Result<()> {
        let tip = chain.tip.take();
        let pending = std::mem::take(&mut chain.pending);
        for (pdu, write) in pending {
            let nid = write.await?;
            tracing::debug!(room.id = %pdu.room_id, event.id = %pdu.event_id, stream_ordering = nid, "persisted received event");
            self.announce(&pdu, nid);
        }
        drop(tip);
        Ok(())
    }
}
