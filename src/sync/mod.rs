//! `/sync`: what a client sees live. Each stream provider answers "everything since position P"
//! for a user (`rooms.rs` for room events; account data, receipts, typing, presence, to-device
//! and device lists join as their issues land), and this module assembles them, long-polling
//! through the notifier when there is nothing new.

pub mod rooms;
pub mod token;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::{FutureExt, select_all};
use ruma::OwnedRoomId;
use ruma::api::client::filter::{FilterDefinition, LazyLoadOptions};
use serde_json::{Value as JsonValue, json};

use crate::service::account_data::AccountDataChanges;
use crate::service::{Result, Services, UserSession};
use crate::storage;
pub use rooms::{JoinedRoom, RoomsSync, Summary};
pub use token::SyncToken;

/// The longest a request waits for something new, whatever the client asked.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
const MAX_TIMELINE_LIMIT: usize = 100;
/// Devices whose lazy-loaded members are remembered before the memory is reset (a reset only
/// makes the next syncs resend some member events).
const MAX_LAZY_DEVICES: usize = 10_000;

pub struct SyncRequest {
    pub since: Option<String>,
    pub timeout: Option<Duration>,
    pub full_state: bool,
    pub filter: FilterDefinition,
}

pub struct SyncResult {
    pub next_batch: String,
    pub rooms: RoomsSync,
    pub account_data: AccountDataChanges,
    /// Ephemeral events (`m.typing`, `m.receipt`) per joined room.
    pub ephemeral: HashMap<OwnedRoomId, Vec<JsonValue>>,
    pub presence: Vec<JsonValue>,
}

impl SyncResult {
    fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.account_data.is_empty()
            && self.ephemeral.is_empty()
            && self.presence.is_empty()
    }
}

impl Services {
    pub async fn sync(&self, session: &UserSession, request: SyncRequest) -> Result<SyncResult> {
        let since = request.since.as_deref().map(SyncToken::parse).transpose()?;
        let deadline =
            tokio::time::Instant::now() + request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
        loop {
            // Listen before reading, so that nothing committed after the read goes unnoticed.
            let mut wakers = self.subscriptions(session).await?;
            let result = self.sync_once(session, since, &request).await?;
            let nothing_new = result.is_empty();
            if since.is_none() || !nothing_new || tokio::time::Instant::now() >= deadline {
                return Ok(result);
            }
            let changed = select_all(wakers.iter_mut().map(|w| w.changed().boxed()));
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(result);
            }
        }
    }

    async fn subscriptions(
        &self,
        session: &UserSession,
    ) -> Result<Vec<tokio::sync::watch::Receiver<i64>>> {
        let user = session.user_id.to_string();
        let rooms = self
            .db
            .read(move |c| storage::rooms::rooms_with_membership(c, &user))
            .await?;
        let mut wakers = vec![self.notifier.subscribe_user(&session.user_id)];
        for row in rooms {
            if matches!(row.membership.as_str(), "join" | "invite" | "knock")
                && let Ok(room) = ruma::RoomId::parse(&row.room_id)
            {
                wakers.push(self.notifier.subscribe_room(&room));
            }
        }
        Ok(wakers)
    }

    async fn sync_once(
        &self,
        session: &UserSession,
        since: Option<SyncToken>,
        request: &SyncRequest,
    ) -> Result<SyncResult> {
        let (user, device) = (session.user_id.to_string(), session.device_id.to_string());
        let room_filter = &request.filter.room;
        let timeline = &room_filter.timeline;
        let limit = timeline
            .limit
            .map_or(DEFAULT_TIMELINE_LIMIT, |l| u64::from(l) as usize)
            .clamp(1, MAX_TIMELINE_LIMIT);
        let strings =
            |ids: &[ruma::OwnedUserId]| ids.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let rooms: Option<Vec<String>> = room_filter
            .rooms
            .as_ref()
            .map(|r| r.iter().map(|r| r.to_string()).collect());
        let not_rooms: Vec<String> = room_filter
            .not_rooms
            .iter()
            .map(|r| r.to_string())
            .collect();
        let types = timeline.types.clone().unwrap_or_default();
        let not_types = timeline.not_types.clone();
        let senders = timeline.senders.as_deref().map(strings).unwrap_or_default();
        // Events from users the client ignores are never sent to it.
        let ignored = self.ignored_users(&session.user_id).await?;
        let mut not_senders = strings(&timeline.not_senders);
        not_senders.extend(ignored.iter().map(|u| u.to_string()));
        let ignored: Vec<String> = ignored.iter().map(|u| u.to_string()).collect();
        let (full_state, include_leave) = (request.full_state, room_filter.include_leave);
        let since_token = since.unwrap_or_default();
        let account_data = self
            .account_data_since(&session.user_id, since_token.account_data)
            .await?;
        let (ephemeral, receipts_position, typing_position) =
            self.ephemeral_since(session, since_token).await?;
        let (presence, presence_position) = self
            .presence_since(&session.user_id, since_token.presence)
            .await?;
        let touched: Vec<String> = account_data
            .rooms
            .keys()
            .chain(ephemeral.keys())
            .map(|r| r.to_string())
            .collect();
        let lazy_options = &room_filter.state.lazy_load_options;
        let include_redundant = match lazy_options {
            LazyLoadOptions::Enabled {
                include_redundant_members,
            } => Some(*include_redundant_members),
            _ => None,
        };
        let device_key = (session.user_id.clone(), session.device_id.clone());
        let sent = {
            let mut cache = self.lazy_members.lock().unwrap_or_else(|p| p.into_inner());
            if since.is_none() {
                // An initial sync starts the device afresh.
                cache.remove(&device_key);
            }
            cache.get(&device_key).cloned().unwrap_or_default()
        };
        let (rooms_sync, upto) = self
            .db
            .read(move |c| {
                let upto = storage::events::max_stream_ordering(c)?;
                let query = rooms::RoomsQuery {
                    user: &user,
                    device: &device,
                    since: since.map(|s| s.events),
                    upto,
                    full_state,
                    timeline_limit: limit,
                    include_leave,
                    rooms: rooms.as_deref(),
                    not_rooms: &not_rooms,
                    types: &types,
                    not_types: &not_types,
                    senders: &senders,
                    not_senders: &not_senders,
                    ignored: &ignored,
                    touched: &touched,
                    lazy: include_redundant.map(|include_redundant| rooms::LazyMembers {
                        include_redundant,
                        sent: &sent,
                    }),
                };
                Ok(rooms::sync_rooms(c, &query).map(|r| (r, upto)))
            })
            .await??;
        if include_redundant.is_some() {
            let mut cache = self.lazy_members.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_LAZY_DEVICES {
                cache.clear();
            }
            let device = cache.entry(device_key).or_default();
            for room in &rooms_sync.join {
                device
                    .entry(room.room_id.clone())
                    .or_default()
                    .extend(room.lazy_sent.iter().cloned());
            }
        }
        let next = SyncToken {
            events: upto,
            account_data: account_data.position,
            receipts: receipts_position,
            typing: typing_position,
            presence: presence_position,
        };
        Ok(SyncResult {
            next_batch: next.encode(),
            rooms: rooms_sync,
            account_data,
            ephemeral,
            presence,
        })
    }

    /// Typing and receipts of the user's joined rooms since the token, as ephemeral events.
    async fn ephemeral_since(
        &self,
        session: &UserSession,
        since: SyncToken,
    ) -> Result<(HashMap<OwnedRoomId, Vec<JsonValue>>, i64, u64)> {
        let rooms: Vec<OwnedRoomId> = self
            .joined_rooms(&session.user_id)
            .await?
            .into_iter()
            .filter_map(|r| OwnedRoomId::try_from(r).ok())
            .collect();
        // The position is taken first: a change racing with this read comes again next time,
        // which is harmless for whole-state events like these.
        let typing_position = self.typing_position();
        let mut ephemeral: HashMap<OwnedRoomId, Vec<JsonValue>> = HashMap::new();
        for room in &rooms {
            if let Some((typists, _)) = self.typing_since(room, since.typing) {
                ephemeral
                    .entry(room.clone())
                    .or_default()
                    .push(json!({ "type": "m.typing", "content": { "user_ids": typists } }));
            }
        }
        let (receipts, receipts_position) = self
            .receipts_since(&session.user_id, &rooms, since.receipts)
            .await?;
        for (room, content) in receipts {
            ephemeral
                .entry(room)
                .or_default()
                .push(json!({ "type": "m.receipt", "content": content }));
        }
        Ok((ephemeral, receipts_position, typing_position))
    }
}
