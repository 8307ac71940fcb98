//! Rooms: creating them, changing membership, sending events and reading them back. Every local
//! event takes one path, `Services::append_event`: under the room's lock (local creation is
//! serialised per room, never globally) it builds the PDU on the current forward extremities,
//! authorises it against the current state with the pure room core, and persists it in one write
//! transaction that also advances state and current state.

mod append;
mod context;
mod create;
mod directory;
mod federated_membership;
mod federation_directory;
mod federation_read;
mod head;
mod hierarchy;
mod ingest;
mod ingest_chain;
mod membership;
mod outliers;
mod read;
mod relations;
mod remote_backfill;
mod remote_invite;
mod remote_join;
mod remote_knock;
mod reports;
mod send;
mod server_visibility;
pub(crate) mod summary;
mod timestamp;
mod token;
mod upgrade;
mod visibility;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::{OwnedRoomId, RoomId};

pub use context::Context;
pub use create::CreateRoom;
pub use directory::{PublicRoomsPage, PublicRoomsQuery};
pub use federated_membership::JoinedRoom;
pub use federation_directory::FederationHierarchy;
pub use federation_read::{FederationPdu, MissingEventsQuery, StateAtEvent};
pub use hierarchy::{HierarchyQuery, HierarchyRoom};
pub use ingest::Ingested;
pub use ingest_chain::IngestChain;
pub use read::{MembersQuery, MessagesPage, MessagesQuery};
pub use read::{client_event, client_events_for};
pub use relations::{RelationsPage, RelationsQuery};
pub use reports::ReportFilter;
pub use token::StreamToken;
pub use visibility::Viewer;

/// One lock per room, so that events of a room are created in order while rooms never wait for
/// each other. The lock guards the room's cached head (see `head.rs`), kept while the room is
/// busy and for up to `IDLE_HEADS` rooms after that, so that a room with a steady stream of
/// events does not read its head again each time its writes happen to drain.
#[derive(Default)]
pub struct RoomLocks(Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<Option<head::RoomHead>>>>>);

/// Rooms whose lock (and cached head) is kept while nobody holds or waits for it.
const IDLE_HEADS: usize = 64;

impl RoomLocks {
    pub async fn lock(
        &self,
        room_id: &RoomId,
    ) -> tokio::sync::OwnedMutexGuard<Option<head::RoomHead>> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() > IDLE_HEADS && !locks.contains_key(room_id) {
                // Locks nobody holds or waits for are dropped, so the map stays small.
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            locks.entry(room_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}
