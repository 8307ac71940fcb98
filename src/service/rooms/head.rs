//! A room's head, cached in memory while the room is busy (and for a while after, see
//! `RoomLocks`): its version rules, forward extremities, depth, the current state entries local
//! events have needed for authorisation, the transaction ids of writes still in flight, how many
//! writes are in flight, and what push evaluation needs of the room. With it, appending an event
//! needs no database read in the common case, and the room's lock is held only while building
//! the event, not while it is committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId, UserId};

use super::super::{Error, Result, Services};
use super::append::pdu_from_row;
use crate::room::Pdu;
use crate::service::push_evaluator::PushRoom;
use crate::storage::{self, state};

/// In-flight transaction ids kept before the oldest are forgotten (by then they are committed,
/// and the send path finds committed ones in `Services::client_txns`).
const RECENT_TXNS: usize = 1024;

type StateKey = (StateEventType, String);

pub struct RoomHead {
    pub rules: RoomVersionRules,
    pub extremities: Vec<OwnedEventId>,
    pub depth: u64,
    /// Current state entries seen so far; `None` records that a key has no event.
    state: HashMap<StateKey, Option<Arc<Pdu>>>,
    pub recent_txns: HashMap<(OwnedUserId, String, String), OwnedEventId>,
    /// What push evaluation needs of the room (members, power levels), once read; dropped with
    /// every state event, which may change it.
    pub(crate) push_room: Option<Arc<PushRoom>>,
    /// Writes of this room queued and not yet committed.
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// When the last local event was appended through this head.
    pub(crate) last_append: Option<Instant>,
}

impl RoomHead {
    /// Moves the head onto a newly appended event.
    pub fn advance(&mut self, pdu: &Arc<Pdu>, sender: &UserId, txn: Option<(String, String)>) {
        self.extremities = vec![pdu.event_id.clone()];
        self.depth = pdu.depth;
        self.last_append = Some(Instant::now());
        if let Some(key) = pdu.state_map_key() {
            self.state.insert(key, Some(pdu.clone()));
            self.push_room = None;
        }
        if let Some((device, txn_id)) = txn {
            if self.recent_txns.len() >= RECENT_TXNS {
                self.recent_txns.clear();
            }
            self.recent_txns
                .insert((sender.to_owned(), device, txn_id), pdu.event_id.clone());
        }
    }
}

impl Services {
    /// Reads a room's head from the database.
    pub(super) async fn load_head(&self, room_id: &RoomId) -> Result<RoomHead> {
        let (_, rules) = self.room_rules(room_id).await?;
        let room = room_id.to_string();
        let (extremities, depth) = self
            .db
            .read(move |c| {
                let rows = storage::events::forward_extremities(c, &room)?;
                let ids: Vec<String> = rows.into_iter().map(|e| e.event_id).collect();
                let depth = storage::events::max_depth(c, &ids)?;
                Ok((ids, depth))
            })
            .await?;
        if extremities.is_empty() {
            return Err(Error::NotFound(format!("room {room_id} has no events")));
        }
        let extremities = extremities
            .iter()
            .map(|id| {
                EventId::parse(id)
                    .map_err(|e| Error::Internal(format!("stored event id {id}: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(RoomHead {
            rules,
            extremities,
            depth: depth as u64,
            state: HashMap::new(),
            recent_txns: HashMap::new(),
            push_room: None,
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_append: None,
        })
    }

    /// The current state events for `keys` (and the create event), from the head's cache, reading
    /// what it lacks.
    pub(super) async fn head_state(
        &self,
        room_id: &RoomId,
        head: &mut RoomHead,
        mut keys: Vec<StateKey>,
    ) -> Result<HashMap<StateKey, Arc<Pdu>>> {
        keys.push((StateEventType::RoomCreate, String::new()));
        let missing: Vec<StateKey> = keys
            .iter()
            .filter(|k| !head.state.contains_key(*k))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let room = room_id.to_string();
            let rows = self
                .db
                .read(move |c| {
                    let mut rows = Vec::new();
                    for key in missing {
                        let nid = state::current_state_event(c, &room, &key.0.to_string(), &key.1)?;
                        let row = nid
                            .map(|n| storage::events::get_event_by_nid(c, n))
                            .transpose()?
                            .flatten();
                        rows.push((key, row));
                    }
                    Ok(rows)
                })
                .await?;
            for (key, row) in rows {
                let pdu = row.map(|r| pdu_from_row(&r)).transpose()?;
                head.state.insert(key, pdu);
            }
        }
        Ok(keys
            .into_iter()
            .filter_map(|key| {
                let pdu = head.state.get(&key)?.clone()?;
                Some((key, pdu))
            })
            .collect())
    }
}
