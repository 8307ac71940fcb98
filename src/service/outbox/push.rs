//! The push outbox: delivers the notifications the push evaluator recorded to each user's HTTP
//! pushers. A task started with the server looks for pushers with notifications after their
//! position whenever the evaluator records some (and every few seconds), and runs one delivery
//! per pusher: its notifications in stream order, one request at a time, so one slow or failing
//! gateway never delays another.
//!
//! A pusher's position is persisted after each notification the gateway accepted (or that was
//! skipped: already read, or refused with a 4xx), never before, so a restart loses nothing
//! pending and resends at most the one notification whose acceptance it had not yet recorded
//! (gateways deduplicate by `event_id`). A gateway that cannot be reached, times out, or answers
//! 5xx or 429 is retried with exponential back-off (1 s doubling to 10 min), kept in the pusher's
//! row. A push key the gateway rejects loses its pusher.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use ruma::push::{Action, HttpPusherData};
use ruma::{OwnedRoomAliasId, RoomId};
use serde_json::Value as JsonValue;

use super::push_gateway::{self, NotificationFacts, Outcome};
use crate::service::rooms::client_event;
use crate::service::rooms::summary::read_summary;
use crate::service::{Result, Services};
use crate::storage::pushers::{PendingNotification, PusherKey, PusherRow};
use crate::storage::{self, now_ms};

/// How often the outbox looks for work when nobody woke it.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Notifications read for a pusher at a time.
const BATCH: usize = 50;
/// The first wait after a failed attempt; each further failure doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How long a delivery that hit a storage error waits before it may be started again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// One pusher's delivery, finishing with the pusher it served.
type Delivery = BoxFuture<'static, PusherKey>;

impl Services {
    /// Delivers forever; started once with the server. Deliveries are futures of this one task,
    /// so aborting it stops them all at once.
    pub async fn run_pusher_sender(self: Arc<Self>) {
        let mut running: FuturesUnordered<Delivery> = FuturesUnordered::new();
        let mut active: HashSet<PusherKey> = HashSet::new();
        loop {
            let wait = match self.start_due_deliveries(&mut running, &mut active).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "cannot look for pushers to deliver to; retrying");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                Some(done) = running.next(), if !running.is_empty() => {
                    active.remove(&done);
                }
                () = self.pusher_wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts a delivery for each pusher with pending notifications whose back-off is over and
    /// that has none running; returns how long until the next back-off ends (at most the idle
    /// poll).
    async fn start_due_deliveries(
        self: &Arc<Self>,
        running: &mut FuturesUnordered<Delivery>,
        active: &mut HashSet<PusherKey>,
    ) -> Result<Duration> {
        let pushers = self
            .db
            .read(|c| storage::pushers::pushers_with_pending(c, "http"))
            .await?;
        let now = now_ms();
        let mut wait = IDLE_POLL;
        for pusher in pushers {
            if active.contains(&pusher.key) {
                continue;
            }
            if let Some(at) = pusher.retry_ts.filter(|at| *at > now) {
                wait = wait.min(Duration::from_millis((at - now).unsigned_abs()));
                continue;
            }
            active.insert(pusher.key.clone());
            let this = self.clone();
            running.push(Box::pin(async move {
                if let Err(e) = this.deliver_pending(&pusher.key).await {
                    tracing::error!(
                        error = %e,
                        user.id = %pusher.key.user_id,
                        pusher.app_id = %pusher.key.app_id,
                        "push delivery failed; retrying"
                    );
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
                pusher.key
            }));
        }
        Ok(wait)
    }

    /// Sends the pusher's pending notifications in order until none is left, the gateway fails
    /// (the back-off is recorded) or the pusher is gone.
    async fn deliver_pending(&self, key: &PusherKey) -> Result<()> {
        loop {
            let lookup = key.clone();
            let found = self
                .db
                .read(move |c| {
                    let Some(pusher) = storage::pushers::get_pusher(c, &lookup)? else {
                        return Ok(None);
                    };
                    let pending = storage::pushers::pending_notifications(
                        c,
                        &pusher.key.user_id,
                        pusher.last_event_nid,
                        BATCH,
                    )?;
                    Ok(Some((pusher, pending)))
                })
                .await?;
            let Some((pusher, pending)) = found else {
                return Ok(());
            };
            if pending.is_empty() || pusher.retry_ts.is_some_and(|at| at > now_ms()) {
                return Ok(());
            }
            let Ok(HttpPusherData { url, .. }) = serde_json::from_str(&pusher.data) else {
                // `/pushers/set` stores no such pusher; should one appear, it is retried slowly
                // rather than in a busy loop.
                let why = "the stored pusher has no gateway URL";
                self.back_off(&pusher, pusher.failures + 1, why).await?;
                return Ok(());
            };
            let mut failures = pusher.failures;
            for item in pending {
                let nid = item.event.nid;
                match self.push_one(&pusher, &url, item).await? {
                    Step::Next => {
                        let key = key.clone();
                        self.db
                            .write("advance_pusher", move |txn| {
                                storage::pushers::advance_pusher_txn(txn, &key, nid)
                            })
                            .await?;
                        failures = 0;
                    }
                    Step::Retry(why) => {
                        self.back_off(&pusher, failures + 1, &why).await?;
                        return Ok(());
                    }
                    Step::Stop => return Ok(()),
                }
            }
        }
    }

    /// Sends one notification, unless the user has read it meanwhile.
    async fn push_one(
        &self,
        pusher: &PusherRow,
        url: &str,
        item: PendingNotification,
    ) -> Result<Step> {
        let facts = match self.notification_facts(&pusher.key, item).await? {
            Facts::Unread(facts) => facts,
            Facts::Read => return Ok(Step::Next),
            Facts::PusherGone => return Ok(Step::Stop),
        };
        let notification = push_gateway::notification(pusher, facts);
        match push_gateway::notify(&self.push_client, url, &notification).await {
            Outcome::Accepted { rejected } => {
                if !rejected.contains(&pusher.key.pushkey) {
                    return Ok(Step::Next);
                }
                tracing::info!(
                    user.id = %pusher.key.user_id,
                    pusher.app_id = %pusher.key.app_id,
                    pusher.pushkey = %abbreviated(&pusher.key.pushkey),
                    "the push gateway rejected the push key; removing its pusher"
                );
                let key = pusher.key.clone();
                self.db
                    .write("delete_rejected_pusher", move |txn| {
                        storage::pushers::delete_pusher_txn(txn, &key)
                    })
                    .await?;
                Ok(Step::Stop)
            }
            Outcome::Refused(why) => {
                tracing::warn!(
                    user.id = %pusher.key.user_id,
                    pusher.app_id = %pusher.key.app_id,
                    pusher.pushkey = %abbreviated(&pusher.key.pushkey),
                    reason = %why,
                    "the push gateway refused a notification; skipping it"
                );
                Ok(Step::Next)
            }
            Outcome::Retry(why) => Ok(Step::Retry(why)),
        }
    }

    /// Records a failed attempt and when the pusher may try again.
    async fn back_off(&self, pusher: &PusherRow, failures: i64, why: &str) -> Result<()> {
        let delay = backoff(failures);
        tracing::warn!(
            user.id = %pusher.key.user_id,
            pusher.app_id = %pusher.key.app_id,
            pusher.pushkey = %abbreviated(&pusher.key.pushkey),
            failures,
            retry_in_ms = delay.as_millis() as u64,
            reason = %why,
            "cannot reach the push gateway; will retry"
        );
        let key = pusher.key.clone();
        let retry_ts = now_ms() + delay.as_millis() as i64;
        self.db
            .write("record_pusher_failure", move |txn| {
                storage::pushers::record_failure_txn(txn, &key, failures, retry_ts)
            })
            .await?;
        Ok(())
    }

    /// What a notification says, read when it is sent: by then the user may have read the event,
    /// or the pusher may be gone (deleted by its user or with its device).
    async fn notification_facts(
        &self,
        key: &PusherKey,
        item: PendingNotification,
    ) -> Result<Facts> {
        let event = client_event(&item.event)?;
        let sender = event
            .get("sender")
            .and_then(JsonValue::as_str)
            .unwrap_or_default()
            .to_owned();
        let (key, room, nid) = (key.clone(), item.event.room_id.clone(), item.event.nid);
        let read = self
            .db
            .read(move |c| {
                if storage::pushers::get_pusher(c, &key)?.is_none() {
                    return Ok(Err(Facts::PusherGone));
                }
                let user = key.user_id;
                if storage::pushers::is_read(c, &user, &room, nid)? {
                    return Ok(Err(Facts::Read));
                }
                let unread_rooms = storage::pushers::unread_rooms(c, &user)?;
                let summary = match RoomId::parse(&room) {
                    Ok(room_id) => read_summary(c, &room_id)?,
                    Err(_) => None,
                };
                let sender_display_name = display_name(c, &room, &sender)?;
                Ok(Ok((unread_rooms, summary, sender_display_name)))
            })
            .await?;
        let (unread_rooms, summary, sender_display_name) = match read {
            Ok(found) => found,
            Err(skip) => return Ok(skip),
        };
        let (room_name, room_alias): (Option<String>, Option<OwnedRoomAliasId>) = summary
            .map(|s| (s.name, s.canonical_alias))
            .unwrap_or_default();
        Ok(Facts::Unread(NotificationFacts {
            event,
            actions: serde_json::from_str::<Vec<Action>>(&item.actions).unwrap_or_default(),
            highlight: item.highlight,
            unread_rooms,
            room_name,
            room_alias,
            sender_display_name,
        }))
    }
}

/// A notification as it stands when its turn comes.
enum Facts {
    Unread(NotificationFacts),
    /// The user has read the event since: nothing to send.
    Read,
    PusherGone,
}

/// What to do after one notification.
enum Step {
    /// It is handled (sent, read, or refused for good): move past it.
    Next,
    /// The gateway failed: keep the position and back off.
    Retry(String),
    /// The pusher is gone.
    Stop,
}

/// The wait after the `failures`-th failure in a row: 1 s, 2 s, 4 s … at most 10 min.
fn backoff(failures: i64) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// A member's display name in a room, from their current member event.
fn display_name(
    conn: &storage::Conn,
    room_id: &str,
    user_id: &str,
) -> storage::Result<Option<String>> {
    let Some(nid) = storage::state::current_state_event(conn, room_id, "m.room.member", user_id)?
    else {
        return Ok(None);
    };
    let Some(row) = storage::events::get_event_by_nid(conn, nid)? else {
        return Ok(None);
    };
    let event: JsonValue = serde_json::from_str(&row.json)?;
    Ok(event
        .pointer("/content/displayname")
        .and_then(JsonValue::as_str)
        .map(str::to_owned))
}

/// The start of a push key, enough to tell pushers apart in logs without revealing the key.
fn abbreviated(pushkey: &str) -> String {
    let start: String = pushkey.chars().take(4).collect();
    format!("{start}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_to_ten_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(i64::MAX), MAX_BACKOFF);
    }

    #[test]
    fn logs_show_only_the_start_of_a_push_key() {
        assert_eq!(abbreviated("V2h5IG9uIGVhcnRo"), "V2h5…");
    }
}
