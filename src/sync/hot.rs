//! The fast path of a long-poll: after a full pass found nothing new, a wake caused only by new
//! events in the user's rooms is answered from the in-memory room tails (`tails.rs`), without
//! reading the database except for the rooms' unread counts (for which it waits briefly for the
//! push evaluator, so that the counts come with the events that change them, unless the events'
//! actions were recorded in their own commit).
//!
//! It only answers what it can answer exactly as the full pass would: new non-state events from
//! other users that relate to nothing, in rooms the user was joined to throughout, within the
//! timeline limit, with a filter that selects no types, senders or rooms. Anything else (a state
//! event, a relation or redaction, the user's own event, a change to account data, receipts,
//! typing, presence, counts or memberships, a tail that does not reach back far enough) sends the
//! request back to the full pass.

use std::collections::HashSet;
use std::time::Duration;

use ruma::api::client::filter::{FilterDefinition, LazyLoadOptions};
use serde_json::Value as JsonValue;

use super::rooms::{JoinedRoom, RoomsSync};
use super::{DeviceListSync, SyncResult, SyncToken, ToDeviceSync};
use crate::service::account_data::AccountDataChanges;
use crate::service::rooms::StreamToken;
use crate::service::{Result, Services, UserSession};
use crate::storage;

/// The longest the fast path waits for the push evaluator, so that counts come with the events.
const PUSH_WAIT: Duration = Duration::from_millis(50);

/// What the last full pass established, which the fast path builds on.
pub struct HotBase {
    /// The full pass's next token: every stream but events is current as of it.
    pub token: SyncToken,
    /// The event position covered so far (the full pass's, then each empty fast pass's).
    pub upto: i64,
    pub joined: Vec<String>,
    pub ignored: HashSet<String>,
    pub ephemeral_generation: u64,
    /// The key counts of the full pass, unchanged until the user's channel says otherwise.
    pub device_lists: DeviceListSync,
}

impl HotBase {
    /// The base after the fast path answered `result`: the same, up to the answer's position.
    pub fn advanced(self, result: &SyncResult) -> HotBase {
        HotBase {
            token: SyncToken::parse(&result.next_batch).unwrap_or(self.token),
            upto: result.upto,
            ..self
        }
    }
}

impl HotBase {
    /// An answer with nothing new, continuing from where the base is.
    pub fn nothing_new(&self) -> SyncResult {
        SyncResult {
            next_batch: SyncToken {
                events: self.upto,
                ..self.token
            }
            .encode(),
            upto: self.upto,
            rooms: RoomsSync::default(),
            account_data: AccountDataChanges {
                position: self.token.account_data,
                ..AccountDataChanges::default()
            },
            ephemeral: Default::default(),
            presence: Vec::new(),
            to_device: ToDeviceSync {
                events: Vec::new(),
                position: self.token.to_device,
            },
            device_lists: self.device_lists.clone(),
        }
    }
}

pub(super) enum Hot {
    /// Only the full pass can answer.
    Slow,
    /// Nothing new for this user: keep waiting.
    Nothing,
    Answer(Box<SyncResult>),
}

/// Whether a filter lets the fast path answer at all.
pub(super) fn filter_allows_hot(filter: &FilterDefinition) -> bool {
    let (room, timeline) = (&filter.room, &filter.room.timeline);
    room.rooms.is_none()
        && room.not_rooms.is_empty()
        && timeline.rooms.is_none()
        && timeline.not_rooms.is_empty()
        && timeline.types.is_none()
        && timeline.not_types.is_empty()
        && timeline.senders.is_none()
        && timeline.not_senders.is_empty()
        && timeline.url_filter.is_none()
        && !matches!(
            room.state.lazy_load_options,
            LazyLoadOptions::Enabled {
                include_redundant_members: true
            }
        )
}

impl Services {
    pub(super) async fn sync_hot(
        &self,
        session: &UserSession,
        filter: &FilterDefinition,
        timeline_limit: usize,
        base: &mut HotBase,
    ) -> Result<Hot> {
        if self.notifier.ephemeral_generation() != base.ephemeral_generation
            || self.typing_position() != base.token.typing
        {
            return Ok(Hot::Slow);
        }
        let (presence_changed, presence_position) =
            self.presence_changes(base.token.presence).await?;
        if !presence_changed.is_empty() || presence_position != base.token.presence {
            return Ok(Hot::Slow);
        }
        let Some(upto) = self.tails.position() else {
            return Ok(Hot::Slow);
        };
        if upto <= base.upto {
            return Ok(Hot::Nothing);
        }
        let user = session.user_id.as_str();
        let lazy = matches!(
            filter.room.state.lazy_load_options,
            LazyLoadOptions::Enabled { .. }
        );
        let sent_members = lazy.then(|| {
            let cache = self.lazy_members.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&(session.user_id.clone(), session.device_id.clone()))
                .cloned()
                .unwrap_or_default()
        });
        let mut rooms: Vec<(String, Vec<JsonValue>, i64)> = Vec::new();
        // The latest new event whose unread counts the evaluator records (rather than its own
        // commit): the answer waits for the evaluator to get that far.
        let mut counted_later = 0;
        for room in &base.joined {
            let Some(window) = self.tails.window(room, base.upto, upto) else {
                return Ok(Hot::Slow);
            };
            let mut events = Vec::new();
            let mut first = None;
            for event in &window.events {
                if event.is_state || event.relates || event.is_stale() || event.sender == user {
                    return Ok(Hot::Slow);
                }
                if !self.counted_inline(event.nid) {
                    counted_later = counted_later.max(event.nid);
                }
                if base.ignored.contains(&event.sender) {
                    continue;
                }
                if let Some(sent) = &sent_members
                    && !sent
                        .get(room)
                        .is_some_and(|members| members.contains(&event.sender))
                {
                    // The client lacks this sender's member event: the full pass adds it.
                    return Ok(Hot::Slow);
                }
                let Some(json) = event.client_json() else {
                    return Ok(Hot::Slow);
                };
                first.get_or_insert(event.nid);
                events.push(json.clone());
            }
            if events.len() > timeline_limit {
                return Ok(Hot::Slow);
            }
            if let Some(first) = first {
                rooms.push((room.clone(), events, first));
            }
        }
        let evaluated = if rooms.is_empty() {
            base.upto = upto;
            // No new events, but counts of events the client already has may have changed.
            let evaluated = self.notifier.push_position();
            if evaluated <= base.token.push {
                return Ok(Hot::Nothing);
            }
            evaluated
        } else if counted_later > 0 {
            // Counts come with the events: wait (briefly) for the push evaluator to reach them.
            self.notifier.wait_for_push(counted_later, PUSH_WAIT).await
        } else {
            // Every new event had its counts recorded in its own commit.
            self.notifier.push_position()
        };
        // Every room whose counts the evaluator changed since the client's token comes along.
        let push = evaluated.max(base.token.push);
        let (user_text, from) = (user.to_owned(), base.token.push);
        let mut room_ids: Vec<String> = rooms.iter().map(|(r, _, _)| r.clone()).collect();
        let joined: HashSet<String> = base.joined.iter().cloned().collect();
        let counts = self
            .db
            .read_small(move |c| {
                if push > from {
                    for room in
                        storage::push_actions::rooms_notified_between(c, &user_text, from, push)?
                    {
                        if joined.contains(&room) && !room_ids.contains(&room) {
                            room_ids.push(room);
                        }
                    }
                }
                room_ids
                    .into_iter()
                    .map(|room| {
                        let counts = storage::push_actions::unread_counts(c, &user_text, &room)?;
                        Ok((room, counts))
                    })
                    .collect::<storage::Result<Vec<_>>>()
            })
            .await?;
        if counts.is_empty() {
            base.token.push = push;
            return Ok(Hot::Nothing);
        }
        let mut timelines = rooms.into_iter();
        let join = counts
            .into_iter()
            .map(|(room_id, unread)| {
                let (timeline, first) = match timelines.next() {
                    Some((_, timeline, first)) => (timeline, Some(first)),
                    None => (Vec::new(), None),
                };
                JoinedRoom {
                    room_id,
                    unread,
                    lazy_sent: Vec::new(),
                    timeline,
                    limited: false,
                    prev_batch: first.map(|first| StreamToken { events: first - 1 }.encode()),
                    state: Vec::new(),
                    summary: None,
                }
            })
            .collect();
        let next = SyncToken {
            events: upto,
            push,
            ..base.token
        };
        Ok(Hot::Answer(Box::new(SyncResult {
            next_batch: next.encode(),
            upto,
            rooms: RoomsSync {
                join,
                ..RoomsSync::default()
            },
            account_data: AccountDataChanges {
                position: base.token.account_data,
                ..AccountDataChanges::default()
            },
            ephemeral: Default::default(),
            presence: Vec::new(),
            to_device: ToDeviceSync {
                events: Vec::new(),
                position: base.token.to_device,
            },
            device_lists: base.device_lists.clone(),
        })))
    }
}
