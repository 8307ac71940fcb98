//! The appservice outbox: sends each appservice (bridge, bot) the events, ephemeral updates and
//! to-device messages it is interested in, in transactions
//! (`PUT {url}/_matrix/app/v1/transactions/{txnId}`, `Authorization: Bearer <hs_token>`).
//!
//! One task started with the server, for the registrations with a `url`, does three things
//! whenever it is woken (a committed event, a delivery that finished, an appservice reported
//! reachable) and every few seconds:
//! - it reads the event stream after its position and queues each event for every appservice
//!   interested in it, moving its position in the same write, so a restart neither loses nor
//!   repeats an event. An appservice is interested in an event whose sender, or (membership
//!   events) target, is in its user namespace (its own user included), whose room is in its room
//!   namespace or has an alias or canonical alias in its alias namespace, or whose room has a
//!   joined or invited member in its user namespace. Those members are read once per room and
//!   then kept up to date from the membership events that go by, so deciding costs no read per
//!   event.
//! - for registrations with `receive_ephemeral`, it queues typing and receipts (with their
//!   `room_id`) of rooms they are interested in, presence of their users and of those sharing a
//!   room with them, and to-device messages for their users' devices (MSC4203). It looks when the
//!   notifier's ephemeral generation moved, and at least every second.
//! - it runs one delivery per appservice with queued work and no back-off, as futures of this
//!   task: a delivery makes the next transaction — up to 100 events, 100 ephemeral updates and
//!   100 to-device messages in queue order, under the next integer id — storing its body and
//!   taking its entries off the queue in one write, then sends it. The same id and body are sent
//!   again until the appservice answers 2xx; only one transaction per appservice is ever open.
//!   Failures back off 2 s doubling to 512 s (Synapse's 2^n, n = 1..9), kept in the database;
//!   a success or [`Services::appservice_reachable`] (a successful ping) ends the back-off.
//!
//! `interest.rs` decides who is interested in what; `ephemeral.rs` reads the ephemeral sources.
//! This module never calls back into the request path.

mod ephemeral;
mod interest;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value as JsonValue, json};

use crate::service::appservice::Registration;
use crate::service::rooms::client_event;
use crate::service::{Result, Services};
use crate::storage::appservice_queue::{self as queue, EntryKind};
use crate::storage::{self, now_ms};
use ephemeral::EphemeralPositions;
use interest::{MemberCache, Target, interested_in_event};

/// How often the outbox looks for work when nobody woke it.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// How often ephemeral sources are looked at when some appservice receives them.
const EPHEMERAL_POLL: Duration = Duration::from_millis(200);
/// Events (and to-device messages) read at a time.
const SCAN_BATCH: usize = 500;
/// The most events, ephemeral updates and to-device messages one transaction may carry, each
/// (Synapse's `MAX_*_PER_TRANSACTION`).
pub const MAX_PER_TRANSACTION: usize = 100;
/// The first wait after a failed transaction; each further failure doubles it, up to
/// `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(512);
/// How long the outbox pauses after a storage error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long an appservice may take to answer a transaction.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Events read past that interest no appservice are recorded in the position only every this
/// many stream positions (or with the next queued event); after a restart they are looked at
/// again, and still interest none.
const PERSIST_EVERY: i64 = 1000;

/// The unstable names Synapse uses for ephemeral data and to-device messages (MSC2409, MSC4203).
const UNSTABLE_EPHEMERAL: &str = "de.sorunome.msc2409.ephemeral";
const UNSTABLE_TO_DEVICE: &str = "de.sorunome.msc2409.to_device";

/// The wait before the next attempt after `failures` failed transactions in a row: 2^n s.
pub fn backoff(failures: i64) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
    FIRST_BACKOFF
        .checked_mul(2u32.saturating_pow(doublings))
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// What the task keeps between rounds.
struct Outbox {
    targets: Arc<Vec<Target>>,
    /// The stream ordering read up to (in memory) and recorded in the database.
    read: i64,
    persisted: i64,
    members: MemberCache,
    ephemeral: Option<EphemeralPositions>,
}

/// One appservice's delivery, finishing with its id.
type Delivery = BoxFuture<'static, String>;

impl Services {
    /// An appservice is reachable again (it answered a ping): its back-off ends and what is
    /// queued for it goes now.
    pub fn appservice_reachable(&self, id: &str) {
        self.appservice_retry_now
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
        self.appservice_wake.notify_one();
    }

    /// Runs the appservice outbox forever; started once with the server. Deliveries are futures
    /// of this one task, so aborting it stops them all at once. Without registrations that have a
    /// `url` there is nothing to do: an appservice configured later starts at the then newest
    /// event.
    pub async fn run_appservice_sender(self: Arc<Self>) {
        let registrations: Vec<Arc<Registration>> = self
            .appservices
            .all()
            .iter()
            .filter(|r| r.url.is_some())
            .cloned()
            .collect();
        if registrations.is_empty() {
            return;
        }
        let mut outbox = loop {
            match self.open_appservice_outbox(&registrations).await {
                Ok(outbox) => break outbox,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the appservice outbox; retrying");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        };
        let mut running: FuturesUnordered<Delivery> = FuturesUnordered::new();
        let mut active: HashSet<String> = HashSet::new();
        loop {
            let mut wait = match self
                .appservice_round(&mut outbox, &mut running, &mut active)
                .await
            {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "appservice outbox failed; retrying");
                    ERROR_PAUSE
                }
            };
            if outbox.ephemeral.is_some() {
                wait = wait.min(EPHEMERAL_POLL);
            }
            tokio::select! {
                Some(done) = running.next(), if !running.is_empty() => {
                    active.remove(&done);
                }
                () = self.appservice_wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Records the registrations and reads where the outbox stands.
    async fn open_appservice_outbox(&self, registrations: &[Arc<Registration>]) -> Result<Outbox> {
        let ids: Vec<String> = registrations.iter().map(|r| r.id.clone()).collect();
        let since = self
            .db
            .write("register_appservices", move |txn| {
                queue::register_services_txn(txn, &ids)
            })
            .await?;
        let position = self.db.read(queue::outbox_position).await?;
        let targets = registrations
            .iter()
            .map(|r| Target {
                registration: r.clone(),
                since: since.get(&r.id).copied().unwrap_or(position),
            })
            .collect();
        let ephemeral = match registrations.iter().any(|r| r.receive_ephemeral) {
            true => Some(self.ephemeral_positions().await?),
            false => None,
        };
        Ok(Outbox {
            targets: Arc::new(targets),
            read: position,
            persisted: position,
            members: MemberCache::default(),
            ephemeral,
        })
    }

    /// Ends the back-offs asked for, queues new events and ephemeral data, then starts a
    /// delivery for each appservice with queued work whose back-off is over and that has none
    /// running; returns how long until the next back-off ends (at most the idle poll).
    async fn appservice_round(
        self: &Arc<Self>,
        outbox: &mut Outbox,
        running: &mut FuturesUnordered<Delivery>,
        active: &mut HashSet<String>,
    ) -> Result<Duration> {
        let reachable: Vec<String> = self
            .appservice_retry_now
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for id in reachable {
            let service = id.clone();
            self.db
                .write("clear_appservice_backoff", move |txn| {
                    queue::clear_backoff_txn(txn, &service)
                })
                .await?;
            tracing::info!(appservice.id = %id, "appservice is back; retrying now");
        }
        while self.queue_appservice_events(outbox).await? {}
        self.queue_appservice_ephemeral(outbox).await?;
        let pending = self.db.read(queue::pending_services).await?;
        let now = now_ms();
        let mut wait = IDLE_POLL;
        for (id, retry_ts) in pending {
            if active.contains(&id) {
                continue;
            }
            let Some(target) = outbox.targets.iter().find(|t| t.registration.id == id) else {
                // Queued for an appservice no longer configured: kept until it comes back.
                continue;
            };
            if let Some(at) = retry_ts.filter(|at| *at > now) {
                wait = wait.min(Duration::from_millis((at - now).unsigned_abs()));
                continue;
            }
            active.insert(id.clone());
            let (this, registration) = (self.clone(), target.registration.clone());
            running.push(Box::pin(async move {
                if let Err(e) = this.deliver_to_appservice(&registration).await {
                    tracing::error!(error = %e, appservice.id = %id, "appservice delivery failed; retrying");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
                id
            }));
        }
        Ok(wait)
    }

    /// Queues the next batch of events after the outbox's position for the appservices
    /// interested in them; returns whether there may be more.
    async fn queue_appservice_events(&self, outbox: &mut Outbox) -> Result<bool> {
        let from = outbox.read;
        let targets = outbox.targets.clone();
        let mut members = std::mem::take(&mut outbox.members);
        let (members, last, entries, more) = self
            .db
            .read(move |c| {
                let events = storage::event_stream::events_after(c, from, SCAN_BATCH)?;
                let mut aliases: HashMap<String, Vec<bool>> = HashMap::new();
                let mut entries = Vec::new();
                for event in &events {
                    for index in
                        interested_in_event(c, event, &targets, &mut members, &mut aliases)?
                    {
                        entries.push((targets[index].registration.id.clone(), event.nid));
                    }
                }
                let last = events.last().map(|e| e.nid);
                Ok((members, last, entries, events.len() == SCAN_BATCH))
            })
            .await?;
        outbox.members = members;
        let Some(last) = last else {
            return Ok(false);
        };
        if !entries.is_empty() || last - outbox.persisted >= PERSIST_EVERY {
            self.db
                .write("queue_appservice_events", move |txn| {
                    queue::enqueue_events_txn(txn, &entries, last)
                })
                .await?;
            outbox.persisted = last;
        }
        outbox.read = last;
        Ok(more)
    }

    /// Sends one stored transaction; `Err` says why it was not accepted (no answer, or not 2xx).
    async fn send_appservice_transaction(
        &self,
        registration: &Arc<Registration>,
        txn_id: i64,
        body: &str,
    ) -> std::result::Result<(), String> {
        let body: JsonValue =
            serde_json::from_str(body).map_err(|e| format!("stored transaction body: {e}"))?;
        let path = format!("/_matrix/app/v1/transactions/{txn_id}");
        self.appservices
            .client
            .put_json(registration, &path, &body, REQUEST_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Sends the appservice its transactions in order until nothing is queued or one fails (the
    /// back-off is recorded).
    async fn deliver_to_appservice(&self, registration: &Arc<Registration>) -> Result<()> {
        if registration.url.is_none() {
            return Ok(());
        }
        loop {
            let id = registration.id.clone();
            let open = self
                .db
                .read(move |c| queue::open_transaction(c, &id))
                .await?;
            let (txn_id, body) = match open {
                Some(open) => open,
                None => match self.make_appservice_transaction(&registration.id).await? {
                    Some(made) => made,
                    None => return Ok(()),
                },
            };
            let id = registration.id.clone();
            match self
                .send_appservice_transaction(registration, txn_id, &body)
                .await
            {
                Ok(()) => {
                    self.db
                        .write("complete_appservice_transaction", move |txn| {
                            queue::complete_transaction_txn(txn, &id, txn_id)
                        })
                        .await?;
                    tracing::debug!(appservice.id = %registration.id, txn.id = txn_id, "appservice transaction accepted");
                }
                Err(why) => {
                    let retry_in = self
                        .db
                        .write("appservice_backoff", move |txn| {
                            queue::record_failure_txn(txn, &id, now_ms(), |failures| {
                                backoff(failures).as_millis() as i64
                            })
                        })
                        .await?;
                    tracing::warn!(
                        appservice.id = %registration.id,
                        txn.id = txn_id,
                        retry_in_ms = retry_in,
                        reason = %why,
                        "appservice transaction failed; backing off"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Makes the appservice's next transaction from its queue: the body is stored and the entries
    /// taken off the queue in one write. `None` when nothing is queued.
    async fn make_appservice_transaction(&self, service: &str) -> Result<Option<(i64, String)>> {
        let id = service.to_owned();
        let (entries, rows) = self
            .db
            .read(move |c| {
                let entries = queue::next_entries(c, &id, MAX_PER_TRANSACTION)?;
                let mut rows = HashMap::new();
                for nid in entries.iter().filter_map(|e| e.event_nid) {
                    if let Some(row) = storage::events::get_event_by_nid(c, nid)? {
                        rows.insert(nid, row);
                    }
                }
                Ok((entries, rows))
            })
            .await?;
        if entries.is_empty() {
            return Ok(None);
        }
        let (mut events, mut ephemeral, mut to_device) = (Vec::new(), Vec::new(), Vec::new());
        for entry in &entries {
            match (entry.kind, entry.event_nid, entry.json.as_deref()) {
                (EntryKind::Event, Some(nid), _) => {
                    // An event purged since it was queued is left out.
                    if let Some(row) = rows.get(&nid) {
                        events.push(client_event(row)?);
                    }
                }
                (EntryKind::Ephemeral, _, Some(json)) => ephemeral.push(parse_stored(json)?),
                (EntryKind::ToDevice, _, Some(json)) => to_device.push(parse_stored(json)?),
                _ => {}
            }
        }
        let body = transaction_body(events, ephemeral, to_device).to_string();
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        let id = service.to_owned();
        let stored = body.clone();
        let txn_id = self
            .db
            .write("make_appservice_transaction", move |txn| {
                queue::create_transaction_txn(txn, &id, &ids, &stored)
            })
            .await?;
        Ok(Some((txn_id, body)))
    }
}

/// A queued entry's JSON, written by this module.
fn parse_stored(json: &str) -> Result<JsonValue> {
    serde_json::from_str(json)
        .map_err(|e| crate::service::Error::Internal(format!("bad queued appservice entry: {e}")))
}

/// A transaction's body. Ephemeral data goes under both the stable `ephemeral` and Synapse's
/// unstable name, since bridges still in use read only the latter; to-device messages only under
/// their unstable name (MSC4203 is not in the specification yet). Empty arrays are left out.
fn transaction_body(
    events: Vec<JsonValue>,
    ephemeral: Vec<JsonValue>,
    to_device: Vec<JsonValue>,
) -> JsonValue {
    let mut body = json!({ "events": events });
    if !ephemeral.is_empty() {
        body[UNSTABLE_EPHEMERAL] = JsonValue::Array(ephemeral.clone());
        body["ephemeral"] = JsonValue::Array(ephemeral);
    }
    if !to_device.is_empty() {
        body[UNSTABLE_TO_DEVICE] = JsonValue::Array(to_device);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_to_512() {
        let seconds: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(seconds, [2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512]);
        assert_eq!(backoff(0), FIRST_BACKOFF);
    }

    #[test]
    fn ephemeral_data_goes_under_both_names_and_empty_parts_are_left_out() {
        let body = transaction_body(vec![json!({"type": "m.room.message"})], vec![], vec![]);
        assert_eq!(body, json!({"events": [{"type": "m.room.message"}]}));
        let typing = json!({"type": "m.typing"});
        let message = json!({"type": "m.room_key"});
        let body = transaction_body(vec![], vec![typing.clone()], vec![message.clone()]);
        assert_eq!(body["ephemeral"], json!([typing]));
        assert_eq!(body[UNSTABLE_EPHEMERAL], json!([typing]));
        assert_eq!(body[UNSTABLE_TO_DEVICE], json!([message]));
        assert_eq!(body["events"], json!([]));
    }
}
