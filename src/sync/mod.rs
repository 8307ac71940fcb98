//! `/sync`: what a client sees live. Each stream provider answers "everything since position P"
//! for a user (`rooms.rs` for room events; account data, receipts, typing, presence, to-device
//! and device lists join as their issues land), and this module assembles them, long-polling
//! through the notifier when there is nothing new.

pub mod device_lists;
mod hot;
mod resume;
pub mod rooms;
pub mod tails;
pub mod to_device;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{FutureExt, select_all};
use ruma::OwnedRoomId;
use ruma::api::client::filter::{FilterDefinition, LazyLoadOptions};
use serde_json::{Value as JsonValue, json};

use crate::service::account_data::{self, AccountDataChanges};
use crate::service::receipts;
use crate::service::{Result, Services, UserSession};
use crate::storage;
pub use device_lists::DeviceListSync;
pub use resume::ResumeCache;
pub use rooms::{JoinedRoom, RoomsSync, Summary};
pub use to_device::ToDeviceSync;
pub use token::SyncToken;

/// The longest a request waits for something new, whatever the client asked.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
const MAX_TIMELINE_LIMIT: usize = 100;
/// Devices whose lazy-loaded members are remembered before the memory is reset (a reset only
/// makes the next syncs resend some member events).
const MAX_LAZY_DEVICES: usize = 10_000;
/// Fewer rooms than this per reader are not worth a read of their own.
const MIN_PARALLEL_ROOMS: usize = 25;

pub struct SyncRequest {
    pub since: Option<String>,
    pub timeout: Option<Duration>,
    pub full_state: bool,
    pub filter: FilterDefinition,
}

pub struct SyncResult {
    pub next_batch: String,
    /// The event stream position the answer is complete up to.
    pub upto: i64,
    pub rooms: RoomsSync,
    pub account_data: AccountDataChanges,
    /// Ephemeral events (`m.typing`, `m.receipt`) per joined room.
    pub ephemeral: HashMap<OwnedRoomId, Vec<JsonValue>>,
    pub presence: Vec<JsonValue>,
    pub to_device: ToDeviceSync,
    pub device_lists: DeviceListSync,
}

impl SyncResult {
    fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.account_data.is_empty()
            && self.ephemeral.is_empty()
            && self.presence.is_empty()
            && self.to_device.events.is_empty()
            && !self.device_lists.has_changes()
    }
}

impl Services {
    pub async fn sync(&self, session: &UserSession, request: SyncRequest) -> Result<SyncResult> {
        let since = request.since.as_deref().map(SyncToken::parse).transpose()?;
        let deadline =
            tokio::time::Instant::now() + request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
        // Listen before reading, so that nothing committed after the read goes unnoticed: the
        // user's own channels now, each room's once the read has named the rooms (see `watch`).
        let hot_allowed = hot::filter_allows_hot(&request.filter);
        let timeline_limit = timeline_limit(&request.filter);
        let device_key = (session.user_id.clone(), session.device_id.clone());
        // A device continuing from the answer its last long-poll gave takes over what that
        // long-poll knew and listened to, and can start on the fast path.
        let resumed = request
            .since
            .as_deref()
            .and_then(|since| self.sync_resume.take(&device_key, since));
        let (mut wakers, mut hot, mut known_push) = match resumed {
            Some(resume) => {
                let hot = (hot_allowed && !resume.wakers.user.has_changed().unwrap_or(true))
                    .then_some(resume.base);
                (resume.wakers, hot, resume.known_push)
            }
            None => (
                Wakers {
                    user: self.notifier.subscribe_user(&session.user_id),
                    counts: self.notifier.subscribe_counts(&session.user_id),
                    rooms: HashMap::new(),
                },
                None,
                since.map_or(0, |s| s.push),
            ),
        };
        let mut last: Option<SyncResult> = None;
        let mut pass_needed = true;
        loop {
            if pass_needed && let Some(base) = hot.as_mut() {
                match self
                    .sync_hot(session, &request.filter, timeline_limit, base)
                    .await?
                {
                    hot::Hot::Answer(result) => {
                        let result = *result;
                        self.metrics.observe_sync_answer(true);
                        if let Some(base) = hot {
                            let base = base.advanced(&result);
                            self.sync_resume
                                .keep(device_key, &result.next_batch, base, wakers);
                        }
                        return Ok(result);
                    }
                    hot::Hot::Nothing => {}
                    hot::Hot::Slow => hot = None,
                }
            }
            if pass_needed && hot.is_none() {
                // What the user's channels announced so far is read by this pass; only later
                // changes should wake the wait below.
                wakers.user.borrow_and_update();
                wakers.counts.borrow_and_update();
                let ephemeral_generation = self.notifier.ephemeral_generation();
                let typing_position = self.typing_position();
                let (result, pass) = self.sync_once(session, since, &request).await?;
                let missed = self.watch(&mut wakers, &pass.watched, result.upto)
                    || self.notifier.ephemeral_generation() != ephemeral_generation
                    || self.typing_position() != typing_position;
                let token = SyncToken::parse(&result.next_batch).unwrap_or_default();
                let base = hot::HotBase {
                    token,
                    upto: result.upto,
                    joined: pass.joined,
                    ignored: pass.ignored,
                    ephemeral_generation,
                    device_lists: result.device_lists.unchanged(),
                };
                if since.is_none() || !result.is_empty() || tokio::time::Instant::now() >= deadline
                {
                    self.metrics.observe_sync_answer(false);
                    // After to-device messages, the next request takes a full pass, which
                    // deletes the messages its token acknowledges.
                    if hot_allowed && !missed && result.to_device.events.is_empty() {
                        self.sync_resume
                            .keep(device_key, &result.next_batch, base, wakers);
                    }
                    return Ok(result);
                }
                if missed {
                    // Something was committed between the read and the new subscriptions.
                    continue;
                }
                known_push = token.push;
                hot = hot_allowed.then_some(base);
                last = Some(result);
            }
            pass_needed = true;
            let rooms = if wakers.rooms.is_empty() {
                futures_util::future::pending().boxed()
            } else {
                select_all(wakers.rooms.values_mut().map(|w| w.changed().boxed()))
                    .map(|_| ())
                    .boxed()
            };
            let woke = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    _ = wakers.user.changed() => Woke::User,
                    _ = wakers.counts.changed() => Woke::Counts,
                    () = rooms => Woke::Rooms,
                }
            })
            .await;
            let counts_moved =
                |counts: &tokio::sync::watch::Receiver<i64>| *counts.borrow() > known_push;
            match woke {
                // Only a full pass reads what reaches the user outside their rooms' events.
                Ok(Woke::User) => hot = None,
                // The fast path reads changed counts itself; without it, counts the client
                // already has need no pass.
                Ok(Woke::Counts) if hot.is_some() => {}
                Ok(Woke::Counts) if !counts_moved(&wakers.counts) => pass_needed = false,
                Ok(Woke::Counts) => {}
                Ok(Woke::Rooms) => {
                    if wakers.user.has_changed().unwrap_or(true) {
                        hot = None;
                    }
                }
                Err(_) => {
                    self.metrics.observe_sync_answer(false);
                    return match last {
                        Some(result) => {
                            if let Some(base) = hot {
                                self.sync_resume
                                    .keep(device_key, &result.next_batch, base, wakers);
                            }
                            Ok(result)
                        }
                        None => match hot {
                            // Resumed and nothing came: the same position again, no pass needed.
                            Some(base) => {
                                let result = base.nothing_new();
                                self.sync_resume
                                    .keep(device_key, &result.next_batch, base, wakers);
                                Ok(result)
                            }
                            None => self
                                .sync_once(session, since, &request)
                                .await
                                .map(|(r, _)| r),
                        },
                    };
                }
            }
        }
    }

    /// Subscribes to the rooms the read named that are not watched yet (and drops those the user
    /// left). Returns true when one of them has already moved past `upto`, the position the read
    /// saw: that change happened before the subscription and would not wake it.
    fn watch(&self, wakers: &mut Wakers, rooms: &[OwnedRoomId], upto: i64) -> bool {
        wakers.rooms.retain(|room, _| rooms.contains(room));
        let mut missed = false;
        for room in rooms {
            if !wakers.rooms.contains_key(room) {
                let receiver = self.notifier.subscribe_room(room);
                missed |= *receiver.borrow() > upto;
                wakers.rooms.insert(room.clone(), receiver);
            }
        }
        missed
    }

    /// One pass over every stream: all that is in memory first (typing, presence), then one
    /// database read for the rest. Also returns the rooms whose changes concern the user.
    async fn sync_once(
        &self,
        session: &UserSession,
        since: Option<SyncToken>,
        request: &SyncRequest,
    ) -> Result<(SyncResult, Pass)> {
        let user_id = session.user_id.clone();
        let device_id = session.device_id.clone();
        let room_filter = &request.filter.room;
        let timeline = &room_filter.timeline;
        let strings =
            |ids: &[ruma::OwnedUserId]| ids.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let since_token = since.unwrap_or_default();

        // In memory: typing (its position taken first: a change racing with the read comes again
        // next time, harmless for whole-state events) and who changed presence.
        let typing_position = self.typing_position();
        let mut typing = self.typing_changed_since(since_token.typing);
        let (presence_changed, presence_position) =
            self.presence_changes(since_token.presence).await?;

        let device_key = (session.user_id.clone(), session.device_id.clone());
        let lazy = match room_filter.state.lazy_load_options {
            LazyLoadOptions::Enabled {
                include_redundant_members,
            } => {
                let mut cache = self.lazy_members.lock().unwrap_or_else(|p| p.into_inner());
                if since.is_none() {
                    // An initial sync starts the device afresh.
                    cache.remove(&device_key);
                }
                let sent = cache.get(&device_key).cloned().unwrap_or_default();
                Some((include_redundant_members, sent))
            }
            _ => None,
        };
        let params = Arc::new(rooms::RoomsParams {
            user: user_id.to_string(),
            device: session.device_id.to_string(),
            since: since.map(|s| s.events),
            full_state: request.full_state,
            timeline_limit: timeline_limit(&request.filter),
            include_leave: room_filter.include_leave,
            rooms: room_filter
                .rooms
                .as_ref()
                .map(|r| r.iter().map(|r| r.to_string()).collect()),
            not_rooms: room_filter
                .not_rooms
                .iter()
                .map(|r| r.to_string())
                .collect(),
            types: timeline.types.clone().unwrap_or_default(),
            not_types: timeline.not_types.clone(),
            senders: timeline.senders.as_deref().map(strings).unwrap_or_default(),
            not_senders: strings(&timeline.not_senders),
            lazy,
        });
        // Every room is sent whole in an initial sync: worth spreading over the readers.
        let parallel = since.is_none() || request.full_state;
        let want_presence = !presence_changed.is_empty();
        let read_params = params.clone();
        let mut snapshot = self
            .db
            .read(move |c| {
                // Storage errors and domain errors both end the read; the outer `Ok` carries both.
                Ok((|| -> Result<Snapshot> {
                    let params = read_params;
                    let user = params.user.as_str();
                    let upto = storage::events::max_stream_ordering(c)?;
                    let push_upto = storage::push_actions::progress(c)?;
                    let memberships = storage::rooms::rooms_with_membership(c, user)?;
                    let joined: HashSet<String> = memberships
                        .iter()
                        .filter(|m| m.membership == "join")
                        .map(|m| m.room_id.clone())
                        .collect();
                    // Events from users the client ignores are never sent to it.
                    let ignored: Vec<String> = account_data::ignored_users_in(c, &user_id)?
                        .iter()
                        .map(|u| u.to_string())
                        .collect();
                    let mut not_senders = params.not_senders.clone();
                    not_senders.extend(ignored.iter().cloned());
                    let account_data =
                        account_data::account_data_changes(c, &user_id, since_token.account_data)?;
                    let (receipts, receipts_position) =
                        receipts::receipts_changes(c, &user_id, &joined, since_token.receipts)?;
                    let to_device =
                        to_device::read(c, &user_id, &device_id, since_token.to_device)?;
                    let to_device_acknowledged =
                        to_device::acknowledged(c, &user_id, &device_id, since_token.to_device)?;
                    let device_lists = device_lists::read(c, &user_id, &device_id, since)?;
                    let sharing: HashSet<String> = if want_presence {
                        storage::presence::users_sharing_a_room(c, user)?
                            .into_iter()
                            .collect()
                    } else {
                        HashSet::new()
                    };
                    // Rooms to include without new events: their account data, receipts, typing
                    // or unread counts changed (the push evaluator records counts after the
                    // events commit).
                    typing.retain(|room, _| joined.contains(room.as_str()));
                    let mut touched: Vec<String> = account_data
                        .rooms
                        .keys()
                        .chain(receipts.keys())
                        .chain(typing.keys())
                        .map(|r| r.to_string())
                        .collect();
                    if since.is_some() && push_upto > since_token.push {
                        touched.extend(storage::push_actions::rooms_notified_between(
                            c,
                            user,
                            since_token.push,
                            push_upto,
                        )?);
                    }
                    let rooms = if parallel {
                        RoomsSync::default()
                    } else {
                        let query = params.query(upto, &not_senders, &ignored, &touched);
                        rooms::sync_rooms(c, &query, &memberships)?
                    };
                    Ok(Snapshot {
                        typing,
                        upto,
                        push_upto,
                        memberships,
                        not_senders,
                        ignored,
                        account_data,
                        receipts,
                        receipts_position,
                        sharing,
                        rooms,
                        to_device,
                        to_device_acknowledged,
                        device_lists,
                    })
                })())
            })
            .await??;
        if snapshot.to_device_acknowledged {
            self.delete_acknowledged_to_device(
                &session.user_id,
                &session.device_id,
                since_token.to_device,
            );
        }
        if parallel {
            snapshot.rooms = self.sync_rooms_in_parallel(&params, &snapshot).await?;
        }

        let watched: Vec<OwnedRoomId> = snapshot
            .memberships
            .iter()
            .filter(|m| matches!(m.membership.as_str(), "join" | "invite" | "knock"))
            .filter_map(|m| OwnedRoomId::try_from(m.room_id.as_str()).ok())
            .collect();
        let joined: Vec<String> = snapshot
            .memberships
            .iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id.clone())
            .collect();
        let ignored: HashSet<String> = snapshot.ignored.iter().cloned().collect();
        let mut ephemeral: HashMap<OwnedRoomId, Vec<JsonValue>> = HashMap::new();
        for (room, typists) in snapshot.typing {
            ephemeral
                .entry(room)
                .or_default()
                .push(json!({ "type": "m.typing", "content": { "user_ids": typists } }));
        }
        for (room, content) in snapshot.receipts {
            ephemeral
                .entry(room)
                .or_default()
                .push(json!({ "type": "m.receipt", "content": content }));
        }
        let presence = self.presence_events(&session.user_id, &presence_changed, &snapshot.sharing);
        let rooms_sync = snapshot.rooms;
        if params.lazy.is_some() {
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
            events: snapshot.upto,
            account_data: snapshot.account_data.position,
            receipts: snapshot.receipts_position,
            typing: typing_position,
            presence: presence_position,
            push: snapshot.push_upto.max(since_token.push),
            to_device: snapshot.to_device.position,
            device_lists: snapshot.device_lists.position,
        };
        Ok((
            SyncResult {
                next_batch: next.encode(),
                upto: snapshot.upto,
                rooms: rooms_sync,
                account_data: snapshot.account_data,
                ephemeral,
                presence,
                to_device: snapshot.to_device,
                device_lists: snapshot.device_lists,
            },
            Pass {
                watched,
                joined,
                ignored,
            },
        ))
    }
}

impl Services {
    /// The rooms of an initial (or full-state) sync, their memberships split into one chunk per
    /// reader, read concurrently up to the snapshot's position, and put back in order.
    async fn sync_rooms_in_parallel(
        &self,
        params: &Arc<rooms::RoomsParams>,
        snapshot: &Snapshot,
    ) -> Result<RoomsSync> {
        let readers = self
            .config
            .database
            .read_connections
            .min(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let chunk = snapshot
            .memberships
            .len()
            .div_ceil(readers)
            .max(MIN_PARALLEL_ROOMS);
        let reads = snapshot.memberships.chunks(chunk).map(|memberships| {
            let (params, memberships) = (params.clone(), memberships.to_vec());
            let (not_senders, ignored) = (snapshot.not_senders.clone(), snapshot.ignored.clone());
            let upto = snapshot.upto;
            self.db.read(move |c| {
                let query = params.query(upto, &not_senders, &ignored, &[]);
                Ok(rooms::sync_rooms(c, &query, &memberships))
            })
        });
        let mut rooms = RoomsSync::default();
        for chunk in futures_util::future::join_all(reads).await {
            rooms.extend(chunk??);
        }
        Ok(rooms)
    }
}

/// What woke a long-poll.
enum Woke {
    User,
    Counts,
    Rooms,
}

/// What a full pass learnt besides its answer: the rooms to listen to, and for the fast path
/// the joined rooms and the ignored users.
struct Pass {
    watched: Vec<OwnedRoomId>,
    joined: Vec<String>,
    ignored: HashSet<String>,
}

/// The timeline limit a filter asks for, within the server's bounds.
fn timeline_limit(filter: &FilterDefinition) -> usize {
    filter
        .room
        .timeline
        .limit
        .map_or(DEFAULT_TIMELINE_LIMIT, |l| u64::from(l) as usize)
        .clamp(1, MAX_TIMELINE_LIMIT)
}

/// What a long-poll listens to: the user's channels and one per room they are in.
pub struct Wakers {
    user: tokio::sync::watch::Receiver<i64>,
    /// The push evaluator's position when it last recorded a notification for the user.
    counts: tokio::sync::watch::Receiver<i64>,
    rooms: HashMap<OwnedRoomId, tokio::sync::watch::Receiver<i64>>,
}

/// Everything `sync_once` reads from the database, in one read.
struct Snapshot {
    /// The timeline's `not_senders` with the ignored users added, and the ignored users.
    not_senders: Vec<String>,
    ignored: Vec<String>,
    /// Typists of the joined rooms whose typing changed.
    typing: HashMap<OwnedRoomId, Vec<ruma::OwnedUserId>>,
    upto: i64,
    push_upto: i64,
    memberships: Vec<storage::rooms::RoomMembershipRow>,
    account_data: AccountDataChanges,
    receipts: HashMap<OwnedRoomId, JsonValue>,
    receipts_position: i64,
    sharing: HashSet<String>,
    rooms: RoomsSync,
    to_device: ToDeviceSync,
    /// Messages the token acknowledged are still stored (see `to_device.rs`).
    to_device_acknowledged: bool,
    device_lists: DeviceListSync,
}
