//! Push evaluation and the push evaluator. `actions_for` runs each joined member's push rules
//! (ruma's evaluation) on an event. The evaluator is an outbox that reacts to committed events:
//! in stream order it evaluates every new event and records the actions of those that notify,
//! together with its new position, in one transaction; a restart resumes from the recorded
//! position, so no notification is lost. Messages of quiet rooms are evaluated by the append
//! path and recorded in their own commit instead; the evaluator passes over them. Unread counts
//! and `/notifications` read what was recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ruma::events::AnySyncTimelineEvent;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{
    Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset,
};
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::serde::Raw;
use ruma::{Int, OwnedUserId, RoomId, UInt, UserId};
use serde_json::Value as JsonValue;

use super::rooms::client_event;
use super::{Result, Services};
use crate::storage::{self, push_actions::PushAction};

/// Events evaluated per transaction.
const BATCH: usize = 200;
/// A batch this small is read on the evaluator's own thread (`Db::read_small`).
const SMALL_BATCH: usize = 16;
/// Rooms whose members and power levels the evaluator keeps between batches.
const MAX_CACHED_ROOMS: usize = 1_000;
/// Events a position moved in memory only may run ahead of the one written (see
/// `evaluate_pending`).
const PERSIST_EVERY: i64 = 1_000;
/// Users whose push rules are kept in memory.
const MAX_CACHED_RULES: usize = 10_000;
/// Events evaluated between two yields to the runtime's other tasks.
const YIELD_EVERY: usize = 16;
/// Actions per write of the evaluator (see `record_actions`).
const WRITE_CHUNK: usize = 128;
/// Events recorded with their actions that the evaluator has not passed yet, at most.
const MAX_INLINE: usize = 10_000;
/// How often the evaluator looks for work when nobody woke it.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// The least time between two of the evaluator's writes. Under a steady stream of events it
/// waits out the rest of this after a write, so one write covers the events of many commits:
/// each write dirties a page per notified member in `event_push_actions` (then with a second
/// index), which was 40% of all WAL frames with a write every 4 ms under `bench load send`. An evaluator that
/// was idle for longer writes at once, so a quiet server adds no delay to unread counts, and a
/// long-poll waits at most `sync::hot::PUSH_WAIT` (longer than this) for the counts.
pub(crate) const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(20);

impl Services {
    /// Evaluates forever; started once with the server.
    pub async fn run_push_evaluator(self: Arc<Self>) {
        let mut cache = EvalCache::default();
        let mut last_write = tokio::time::Instant::now();
        loop {
            tokio::time::sleep_until(last_write + MIN_WRITE_INTERVAL).await;
            match self.evaluate_pending(&mut cache).await {
                Ok(0) => {
                    let _ = tokio::time::timeout(IDLE_POLL, self.push_wake.notified()).await;
                }
                // A full batch leaves more waiting: take it at once.
                Ok(BATCH) => {}
                Ok(_) => last_write = tokio::time::Instant::now(),
                Err(e) => {
                    tracing::error!(error = %e, "push evaluation failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Evaluates the next batch of committed events; returns how many it took.
    pub(crate) async fn evaluate_pending(&self, cache: &mut EvalCache) -> Result<usize> {
        if cache.rooms.len() > MAX_CACHED_ROOMS {
            cache.rooms.clear();
        }
        let known = cache.position;
        let read = move |c: &storage::Conn| {
            // Only the evaluator moves its position, so after the first read it is known.
            let position = match known {
                Some(position) => position,
                None => storage::push_actions::progress(c)?,
            };
            Ok((
                position,
                storage::push_actions::events_after(c, position, BATCH)?,
            ))
        };
        // After a small batch the next is likely small too: read it inline, since a `/sync`
        // waiting for unread counts waits for this.
        let (position, rows) = if cache.last_batch < SMALL_BATCH {
            self.db.read_small(read).await?
        } else {
            self.db.read(read).await?
        };
        if known.is_none() {
            cache.persisted = position;
        }
        cache.position = Some(position);
        cache.last_batch = rows.len();
        let Some(last) = rows.last().map(|r| r.nid) else {
            self.notifier.push_evaluated(position);
            return Ok(0);
        };
        let mut actions = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            if index > 0 && index % YIELD_EVERY == 0 {
                // A batch of a busy room takes milliseconds to evaluate; the requests this worker
                // also serves get their turn in between.
                tokio::task::yield_now().await;
            }
            if self.counted_inline(row.nid) {
                // A message whose actions were recorded with it (`rooms/append.rs`).
                continue;
            }
            let event = client_event(row)?;
            let Ok(room_id) = RoomId::parse(&row.room_id) else {
                continue;
            };
            if !cache.rooms.contains_key(room_id.as_str()) {
                let room = self.push_room(&room_id).await?;
                cache.rooms.insert(room_id.to_string(), Arc::new(room));
            }
            let room = cache.rooms[room_id.as_str()].clone();
            actions.extend(self.actions_for(&room, &room_id, row.nid, &event).await?);
            if event.get("state_key").is_some() {
                // Members, names or power levels may have changed with it.
                cache.rooms.remove(room_id.as_str());
            }
        }
        let woken: std::collections::BTreeSet<OwnedUserId> = actions
            .iter()
            .filter_map(|a| UserId::parse(&a.user_id).ok())
            .collect();
        let count = rows.len();
        // A batch without actions (every event counted with it, or notifying nobody) moves the
        // position in memory only, up to `PERSIST_EVERY` events: after a restart the evaluator
        // goes over them again, which records nothing twice.
        if !actions.is_empty() || last - cache.persisted >= PERSIST_EVERY {
            let recorded = self.record_actions(actions, last).await;
            if let Err(e) = recorded {
                // What was written is unknown until read again.
                cache.position = None;
                return Err(e);
            }
            cache.persisted = last;
        }
        cache.position = Some(last);
        self.push_inline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|nid| *nid > last);
        self.pusher_wake.notify_one();
        self.notifier.push_evaluated(last);
        for user in woken {
            self.notifier.counts_changed(&user, last);
        }
        Ok(count)
    }

    /// Records a batch's actions and then the evaluator's new position, in writes of at most
    /// `WRITE_CHUNK` actions sorted by user. One write of a whole batch (hundreds of actions in
    /// a busy room) held the writer for 4–6 ms, and every send queued meanwhile waited for it;
    /// in user order each part touches the pages of a few users only, so the parts together
    /// write no more pages than the whole did.
    async fn record_actions(&self, mut actions: Vec<PushAction>, last: i64) -> Result<()> {
        actions.sort_unstable_by(|a, b| {
            (a.user_id.as_str(), a.event_nid).cmp(&(b.user_id.as_str(), b.event_nid))
        });
        while actions.len() > WRITE_CHUNK {
            let rest = actions.split_off(WRITE_CHUNK);
            let part = std::mem::replace(&mut actions, rest);
            self.db
                .write("record_push_actions", move |c| {
                    storage::push_actions::record_evaluated_txn(c, &part)
                })
                .await?;
        }
        self.db
            .write("record_push_actions", move |c| {
                storage::push_actions::record_batch_txn(c, &actions, last)
            })
            .await?;
        Ok(())
    }

    /// What evaluation needs of a room: its joined members with their display names, its size,
    /// and the power levels that decide who may notify the whole room.
    pub(crate) async fn push_room(&self, room_id: &RoomId) -> Result<PushRoom> {
        let room = room_id.to_string();
        let members = self
            .db
            .read(move |c| {
                let rows = storage::rooms::members(c, &room, Some("join"))?;
                let mut members = Vec::with_capacity(rows.len());
                for row in rows {
                    let name = storage::events::get_event_by_nid(c, row.event_nid)?
                        .and_then(|e| serde_json::from_str::<JsonValue>(&e.json).ok())
                        .and_then(|e| {
                            e.pointer("/content/displayname")
                                .and_then(JsonValue::as_str)
                                .map(str::to_owned)
                        });
                    members.push((row.user_id, name));
                }
                Ok(members)
            })
            .await?;
        let members: Vec<(OwnedUserId, String)> = members
            .into_iter()
            .filter_map(|(user, name)| {
                let id = UserId::parse(&user).ok()?;
                let name = name.unwrap_or_else(|| id.localpart().to_owned());
                Some((id, name))
            })
            .collect();
        let levels = self.power_levels(room_id).await?;
        let (_, rules) = self.room_rules(room_id).await?;
        let creators = self.room_creators(room_id).await?;
        let users: BTreeMap<OwnedUserId, Int> = levels
            .get("users")
            .and_then(JsonValue::as_object)
            .map(|users| {
                users
                    .iter()
                    .filter_map(|(u, l)| Some((UserId::parse(u).ok()?, Int::new(l.as_i64()?)?)))
                    .collect()
            })
            .unwrap_or_default();
        let users_default = levels
            .get("users_default")
            .and_then(JsonValue::as_i64)
            .and_then(Int::new)
            .unwrap_or_default();
        let notifications: NotificationPowerLevels = levels
            .get("notifications")
            .cloned()
            .and_then(|n| serde_json::from_value(n).ok())
            .unwrap_or_default();
        let power_levels = PushConditionPowerLevelsCtx::new(
            users,
            users_default,
            notifications,
            RoomPowerLevelsRules::new(&rules.authorization, creators),
        );
        Ok(PushRoom {
            member_count: UInt::try_from(members.len()).unwrap_or_default(),
            members,
            power_levels: Some(power_levels),
        })
    }
}

impl Services {
    /// The notifying actions `event` (at stream position `nid`, in the client format) has for
    /// each joined member of `room` but its sender.
    pub(crate) async fn actions_for(
        &self,
        room: &PushRoom,
        room_id: &RoomId,
        nid: i64,
        event: &JsonValue,
    ) -> Result<Vec<PushAction>> {
        let Some(sender) = event.get("sender").and_then(JsonValue::as_str) else {
            return Ok(Vec::new());
        };
        let raw: Raw<AnySyncTimelineEvent> = match serde_json::value::to_raw_value(event) {
            Ok(raw) => Raw::from_json(raw),
            Err(_) => return Ok(Vec::new()),
        };
        // Flattened once for all members (ruma's `get_actions` flattens it for each).
        let flat = FlattenedJson::from_raw(&raw);
        let thread_id = thread_of(event);
        // Members with the default rules who are not named in the event share one evaluation.
        let named = raw.json().get().to_lowercase();
        let mut shared: Option<Option<(bool, String)>> = None;
        let mut actions = Vec::new();
        for (member, display_name) in &room.members {
            if member.as_str() == sender {
                continue;
            }
            let rules = self.rules_for_push(member).await?;
            let unnamed_default = rules.default && !named.contains(&member.as_str().to_lowercase());
            let outcome = match &shared {
                Some(outcome) if unnamed_default => outcome.clone(),
                _ => {
                    let mut ctx = PushConditionRoomCtx::new(
                        room_id.to_owned(),
                        room.member_count,
                        member.clone(),
                        display_name.clone(),
                    );
                    ctx.power_levels = room.power_levels.clone();
                    let matched = first_match(&rules.ruleset, &flat, &ctx).await;
                    let outcome = matched.iter().any(Action::should_notify).then(|| {
                        let actions =
                            serde_json::to_string(matched).unwrap_or_else(|_| "[]".into());
                        (matched.iter().any(Action::is_highlight), actions)
                    });
                    if unnamed_default {
                        shared = Some(outcome.clone());
                    }
                    outcome
                }
            };
            if let Some((highlight, actions_json)) = outcome {
                actions.push(PushAction {
                    user_id: member.to_string(),
                    room_id: room_id.to_string(),
                    event_nid: nid,
                    highlight,
                    actions: actions_json,
                    thread_id: thread_id.clone(),
                });
            }
        }
        Ok(actions)
    }

    /// A user's push rules, kept in memory until any user's rules change.
    async fn rules_for_push(&self, user_id: &UserId) -> Result<Arc<UserPushRules>> {
        let generation = self.push_rules_generation.load(Ordering::Acquire);
        {
            let cache = self
                .push_rule_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if cache.0 == generation
                && let Some(rules) = cache.1.get(user_id)
            {
                return Ok(rules.clone());
            }
        }
        let ruleset = self.push_rules(user_id).await?;
        let default = serde_json::to_value(&ruleset).ok()
            == serde_json::to_value(Ruleset::server_default(user_id)).ok();
        let rules = Arc::new(UserPushRules { ruleset, default });
        let mut cache = self
            .push_rule_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.0 != generation || cache.1.len() >= MAX_CACHED_RULES {
            *cache = (generation, HashMap::new());
        }
        cache.1.insert(user_id.to_owned(), rules.clone());
        Ok(rules)
    }

    /// Records that the event at `nid` was evaluated and its actions recorded with it, so the
    /// evaluator passes over it. Forgotten once the evaluator is past it; not recorded at all
    /// while the evaluator lags far behind (it then evaluates the event again, and recording
    /// the same actions twice changes nothing).
    pub(crate) fn counted_with_event(&self, nid: i64) {
        let mut inline = self.push_inline.lock().unwrap_or_else(|p| p.into_inner());
        if inline.len() < MAX_INLINE {
            inline.insert(nid);
        }
    }

    /// Whether the event at `nid` had its actions recorded with it (see `counted_with_event`).
    pub(crate) fn counted_inline(&self, nid: i64) -> bool {
        self.push_inline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&nid)
    }
}

/// The actions of the first of `rules` that applies to `event`: what ruma's
/// `Ruleset::get_actions` answers (the sender's own events reach no rule; the caller skips the
/// sender), given the event flattened once for every member instead of once per member.
async fn first_match<'a>(
    rules: &'a Ruleset,
    event: &FlattenedJson,
    context: &PushConditionRoomCtx,
) -> &'a [Action] {
    for rule in rules {
        if rule.applies(event, context).await {
            return rule.actions();
        }
    }
    &[]
}

/// The thread an event belongs to for unread counts: its thread root when it is a thread reply
/// (`m.thread` relation), else `main`.
fn thread_of(event: &JsonValue) -> String {
    let relation = event.pointer("/content/m.relates_to");
    match relation
        .and_then(|r| r.get("rel_type"))
        .and_then(JsonValue::as_str)
    {
        Some("m.thread") => relation
            .and_then(|r| r.get("event_id"))
            .and_then(JsonValue::as_str)
            .unwrap_or("main")
            .to_owned(),
        _ => "main".to_owned(),
    }
}

/// What the evaluator keeps between batches: its position and each room's members and power
/// levels (dropped after each state event of the room, which may change them).
#[derive(Default)]
pub(crate) struct EvalCache {
    /// The evaluator's recorded position, once read.
    position: Option<i64>,
    /// How many events the last batch held.
    last_batch: usize,
    /// The position last written to the database.
    persisted: i64,
    rooms: HashMap<String, Arc<PushRoom>>,
}

/// A user's push rules as evaluation keeps them.
pub(crate) struct UserPushRules {
    ruleset: Ruleset,
    /// Whether they are the server's defaults. The defaults of two users differ only where they
    /// name the user (`.m.rule.invite_for_me` matches the invitee's `state_key`,
    /// `.m.rule.is_user_mention` the user's id in `m.mentions`), so for an event that names
    /// neither user anywhere, they decide the same; `actions_for` evaluates such users once.
    default: bool,
}

/// What evaluation needs of a room.
pub(crate) struct PushRoom {
    members: Vec<(OwnedUserId, String)>,
    member_count: UInt,
    power_levels: Option<PushConditionPowerLevelsCtx>,
}

/// One entry of `/notifications`.
pub struct NotificationEntry {
    pub room_id: String,
    pub event: JsonValue,
    pub actions: Vec<Action>,
    pub read: bool,
    pub ts: i64,
}

impl Services {
    /// `GET /notifications`: the user's notifications, newest first, with a `next_token`.
    pub async fn notifications(
        &self,
        user_id: &UserId,
        from: Option<&str>,
        limit: usize,
        only_highlight: bool,
    ) -> Result<(Vec<NotificationEntry>, Option<String>)> {
        let before = match from {
            Some(token) => token.parse::<i64>().map_err(|_| {
                super::Error::InvalidParam(format!("invalid notifications token {token:?}"))
            })?,
            None => i64::MAX,
        };
        let limit = limit.clamp(1, 100);
        let user = user_id.to_string();
        let rows = self
            .db
            .read(move |c| {
                let rows =
                    storage::push_actions::notifications(c, &user, before, limit, only_highlight)?;
                let mut out = Vec::with_capacity(rows.len());
                for (row, _highlight, actions) in rows {
                    let read =
                        row.nid <= storage::push_actions::read_position(c, &user, &row.room_id)?;
                    out.push((row, actions, read));
                }
                Ok(out)
            })
            .await?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(row, _, _)| row.nid.to_string()))
            .flatten();
        let mut entries = Vec::with_capacity(rows.len());
        for (row, actions, read) in rows {
            let mut event = client_event(&row)?;
            let ts = event
                .get("origin_server_ts")
                .and_then(JsonValue::as_i64)
                .unwrap_or(0);
            if let Some(object) = event.as_object_mut() {
                object.remove("room_id");
            }
            entries.push(NotificationEntry {
                room_id: row.room_id,
                event,
                actions: serde_json::from_str(&actions).unwrap_or_default(),
                // Read: at or before the user's read receipt in the room.
                read,
                ts,
            });
        }
        Ok((entries, next))
    }
}
