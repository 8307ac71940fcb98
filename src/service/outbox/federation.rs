//! The federation outbox: sends local events (PDUs) and ephemeral updates (EDUs) to the other
//! servers of their rooms, in transactions (`PUT /_matrix/federation/v1/send/{txnId}`).
//!
//! One task started with the server does two things whenever it is woken (a committed event, a
//! queued EDU, a delivery that finished) and every few seconds:
//! - it reads the event stream after its position and queues each new local event for every
//!   other server with a joined member in the room (and, for a membership event, the server of
//!   its target), moving its position in the same transaction, so a restart neither loses nor
//!   repeats an event. The servers are those of the room when the event is read, a moment after
//!   its commit.
//! - it runs one delivery per destination with queued entries and no back-off, as futures of
//!   this task, so a failing server never delays another, nor any local user: each delivery sends
//!   transactions of up to 50 PDUs and 100 EDUs in queue order until the queue is empty. A
//!   transaction keeps its id and entries until the destination answers 200, and only then are
//!   its entries deleted; a destination that fails is retried with the same transaction after a
//!   back-off of 2 s doubling to 1 h, kept in the database.
//!
//! EDUs are queued through `queue_room_edu` (typing, receipts: for the other servers of a room)
//! and `queue_edu` (given destinations, e.g. presence). PDUs that other servers' users sent
//! through this server (`send_join`, `send_leave`) are queued with their write, by the room
//! service. This module never calls back into the request path.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use ruma::api::federation::transactions::send_transaction_message;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedTransactionId, RoomId, ServerName, UserId};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use crate::service::{Error, Result, Services};
use crate::storage::event_stream::StreamEvent;
use crate::storage::federation_queue::Transaction;
use crate::storage::{self, now_ms};

/// How often the outbox looks for work when nobody woke it.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Events read from the stream at a time.
const SCAN_BATCH: usize = 500;
/// How long the outbox lets events gather after being woken before it reads them: a burst of
/// local events is one read of the stream, not one per event (under `bench load send`, rounds
/// per event were about 5% of the server's CPU). It delays a delivery by at most this.
const WAKE_GATHER: Duration = Duration::from_millis(10);
/// The most PDUs and EDUs one transaction may carry (the specification's limits).
pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;
/// The first wait after a failed transaction; each further failure doubles it, up to
/// `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long the outbox pauses after a storage error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Events read past that needed no sending are recorded in the position only every this many
/// stream positions (or with the next queued PDU), so a server whose rooms are all local does not
/// pay a write per event; after a restart those events are looked at again, and still need none.
const PERSIST_EVERY: i64 = 1000;

/// How far the outbox has read the event stream: `read` in memory, `persisted` in the database.
#[derive(Default)]
struct ScanPosition {
    read: Option<i64>,
    persisted: i64,
}

/// One destination's delivery, finishing with the destination it served.
type Delivery = BoxFuture<'static, String>;

/// The wait before the next attempt after `failures` failed transactions in a row.
pub fn backoff(failures: i64) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
    FIRST_BACKOFF
        .checked_mul(2u32.saturating_pow(doublings))
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

impl Services {
    /// A verified request came from `server`: if the sender was backing off from it, it is
    /// reachable again, so what is queued for it goes now rather than when the back-off ends.
    pub fn heard_from(self: &Arc<Self>, server: &ServerName) {
        if !self.backed_off().remove(server.as_str()) {
            return;
        }
        let (this, destination) = (self.clone(), server.to_string());
        tokio::spawn(async move {
            let dest = destination.clone();
            let cleared = this
                .db
                .write("clear_federation_backoff", move |txn| {
                    storage::federation_queue::clear_backoff_txn(txn, &dest)
                })
                .await;
            match cleared {
                Ok(()) => {
                    tracing::info!(server.name = %destination, "server is back; retrying now");
                    this.federation_wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, server.name = %destination, "cannot end a back-off")
                }
            }
        });
    }

    fn backed_off(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.backed_off.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the federation outbox forever; started once with the server. Deliveries are futures
    /// of this one task, so aborting it stops them all at once.
    pub async fn run_federation_sender(self: Arc<Self>) {
        let mut running: FuturesUnordered<Delivery> = FuturesUnordered::new();
        let mut active: HashSet<String> = HashSet::new();
        let mut scan = ScanPosition::default();
        loop {
            let wait = match self
                .federation_round(&mut scan, &mut running, &mut active)
                .await
            {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "federation outbox failed; retrying");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                Some(done) = running.next(), if !running.is_empty() => {
                    active.remove(&done);
                }
                () = self.federation_wake.notified() => tokio::time::sleep(WAKE_GATHER).await,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Queues `edu` (`edu_type` with `content`) for every other server with a joined member in
    /// `room_id`. Failures are logged, not returned: an ephemeral update is not worth failing
    /// the local request for.
    pub async fn queue_room_edu(&self, room_id: &RoomId, edu_type: &str, content: JsonValue) {
        if !self.federation.is_enabled() {
            return;
        }
        let room = room_id.to_string();
        let own = self.server_name().to_string();
        let servers = self
            .db
            .read(move |c| storage::room_servers::joined_servers(c, &room))
            .await
            .map(|servers| servers.into_iter().filter(|s| *s != own).collect());
        match servers {
            Ok(servers) => self.queue_edu(servers, edu_type, content).await,
            Err(e) => {
                tracing::warn!(error = %e, room.id = %room_id, "cannot find the servers of a room");
            }
        }
    }

    /// Queues `edu` for each of `destinations`.
    pub async fn queue_edu(&self, destinations: Vec<String>, edu_type: &str, content: JsonValue) {
        if destinations.is_empty() || !self.federation.is_enabled() {
            return;
        }
        let edu = serde_json::json!({ "edu_type": edu_type, "content": content }).to_string();
        let queued = self
            .db
            .write("queue_federation_edu", move |txn| {
                storage::federation_queue::enqueue_edu_txn(txn, &destinations, &edu)
            })
            .await;
        match queued {
            Ok(()) => self.federation_wake.notify_one(),
            Err(e) => tracing::warn!(error = %e, edu.r#type = edu_type, "cannot queue an EDU"),
        }
    }

    /// A local user's typing in a room with other servers, as an `m.typing` EDU.
    pub(crate) async fn federate_typing(&self, room_id: &RoomId, user_id: &UserId, typing: bool) {
        // Other servers' users' typing came from their server: it is not sent back.
        if user_id.server_name() != self.server_name() {
            return;
        }
        let content = serde_json::json!({
            "room_id": room_id,
            "user_id": user_id,
            "typing": typing,
        });
        self.queue_room_edu(room_id, "m.typing", content).await;
    }

    /// A local user's public read receipt, as an `m.receipt` EDU; private receipts stay here.
    pub(crate) async fn federate_receipt(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        receipt_type: &str,
        thread_id: &str,
        event_id: &ruma::EventId,
    ) {
        if receipt_type != "m.read" || user_id.server_name() != self.server_name() {
            return;
        }
        let mut data = serde_json::json!({ "ts": now_ms() });
        if !thread_id.is_empty() {
            data["thread_id"] = thread_id.into();
        }
        let mut by_user = serde_json::Map::new();
        by_user.insert(
            user_id.to_string(),
            serde_json::json!({ "event_ids": [event_id], "data": data }),
        );
        let content = serde_json::json!({ room_id.as_str(): { "m.read": by_user } });
        self.queue_room_edu(room_id, "m.receipt", content).await;
    }

    /// Queues new local events, then starts a delivery for each destination with queued entries
    /// whose back-off is over and that has none running; returns how long until the next
    /// back-off ends (at most the idle poll).
    async fn federation_round(
        self: &Arc<Self>,
        scan: &mut ScanPosition,
        running: &mut FuturesUnordered<Delivery>,
        active: &mut HashSet<String>,
    ) -> Result<Duration> {
        while self.queue_new_events(scan).await? {}
        let pending = self
            .db
            .read(storage::federation_queue::pending_destinations)
            .await?;
        let now = now_ms();
        let mut wait = IDLE_POLL;
        for (destination, retry_ts) in pending {
            if active.contains(&destination) {
                continue;
            }
            if let Some(at) = retry_ts.filter(|at| *at > now) {
                wait = wait.min(Duration::from_millis((at - now).unsigned_abs()));
                self.backed_off().insert(destination);
                continue;
            }
            active.insert(destination.clone());
            let this = self.clone();
            running.push(Box::pin(async move {
                if let Err(e) = this.deliver_to(&destination).await {
                    tracing::error!(error = %e, server.name = %destination, "federation delivery failed; retrying");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
                destination
            }));
        }
        Ok(wait)
    }

    /// Queues the next batch of events after the outbox's position; returns whether there may be
    /// more.
    async fn queue_new_events(&self, scan: &mut ScanPosition) -> Result<bool> {
        let from = match scan.read {
            Some(position) => position,
            None => {
                let position = self
                    .db
                    .read(storage::federation_queue::outbox_position)
                    .await?;
                *scan = ScanPosition {
                    read: Some(position),
                    persisted: position,
                };
                position
            }
        };
        let own = self.server_name().to_owned();
        let (last, entries, more) = self
            .db
            .read(move |c| {
                let events = storage::event_stream::events_after(c, from, SCAN_BATCH)?;
                let mut servers: HashMap<String, Vec<String>> = HashMap::new();
                let mut entries = Vec::new();
                for event in events.iter().filter(|e| is_local(e, &own)) {
                    if !servers.contains_key(&event.room_id) {
                        let joined = storage::room_servers::joined_servers(c, &event.room_id)?;
                        servers.insert(event.room_id.clone(), joined);
                    }
                    let joined = servers.get(&event.room_id).map_or(&[][..], Vec::as_slice);
                    for destination in destinations(event, joined, &own) {
                        entries.push((destination, event.nid));
                    }
                }
                let last = events.last().map(|e| e.nid);
                Ok((last, entries, events.len() == SCAN_BATCH))
            })
            .await?;
        let Some(last) = last else {
            return Ok(false);
        };
        if !entries.is_empty() || last - scan.persisted >= PERSIST_EVERY {
            self.db
                .write("queue_federation_pdus", move |txn| {
                    storage::federation_queue::enqueue_pdus_txn(txn, &entries, last)
                })
                .await?;
            scan.persisted = last;
        }
        scan.read = Some(last);
        Ok(more)
    }

    /// Sends `destination` its queued transactions in order until none is left or one fails
    /// (the back-off is recorded).
    async fn deliver_to(&self, destination: &str) -> Result<()> {
        let server = ServerName::parse(destination).map_err(|e| {
            Error::Internal(format!("queued for bad server name {destination}: {e}"))
        })?;
        loop {
            let dest = destination.to_owned();
            let Some(transaction) = self
                .db
                .write("next_federation_transaction", move |txn| {
                    storage::federation_queue::next_transaction_txn(
                        txn,
                        &dest,
                        MAX_PDUS,
                        MAX_EDUS,
                        now_ms(),
                    )
                })
                .await?
            else {
                return Ok(());
            };
            let dest = destination.to_owned();
            let txn_id = transaction.txn_id.clone();
            match self.send_transaction(&server, transaction).await {
                Ok(()) => {
                    self.db
                        .write("complete_federation_transaction", move |txn| {
                            storage::federation_queue::complete_transaction_txn(txn, &dest, &txn_id)
                        })
                        .await?;
                }
                Err(why) => {
                    let retry_in = self
                        .db
                        .write("federation_backoff", move |txn| {
                            let failures =
                                storage::federation_queue::record_failure_txn(txn, &dest)?;
                            let wait = backoff(failures);
                            let retry_ts = now_ms() + wait.as_millis() as i64;
                            storage::federation_queue::set_retry_txn(txn, &dest, retry_ts)?;
                            Ok(wait)
                        })
                        .await?;
                    tracing::warn!(
                        server.name = %destination,
                        txn.id = %txn_id,
                        retry_in_ms = retry_in.as_millis() as u64,
                        reason = %why,
                        "federation transaction failed; backing off"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Sends one transaction; `Err` says why it was not accepted.
    async fn send_transaction(
        &self,
        destination: &ServerName,
        transaction: Transaction,
    ) -> std::result::Result<(), String> {
        let mut request = send_transaction_message::v1::Request::new(
            OwnedTransactionId::from(transaction.txn_id),
            self.server_name().to_owned(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        for pdu in transaction.pdus {
            request
                .pdus
                .push(RawJsonValue::from_string(pdu).map_err(|e| e.to_string())?);
        }
        for edu in transaction.edus {
            let raw = RawJsonValue::from_string(edu).map_err(|e| e.to_string())?;
            request.edus.push(Raw::from_json(raw));
        }
        let (pdus, edus) = (request.pdus.len(), request.edus.len());
        let txn_id = request.transaction_id.clone();
        let response = self
            .federation
            .send(destination, request)
            .await
            .map_err(|e| e.to_string())?;
        for (event_id, result) in response.pdus {
            if let Err(why) = result {
                tracing::debug!(server.name = %destination, event.id = %event_id, reason = %why, "the destination refused a PDU");
            }
        }
        tracing::debug!(server.name = %destination, txn.id = %txn_id, pdus, edus, "federation transaction accepted");
        Ok(())
    }
}

/// Whether the outbox sends this event: a local user's, in the room's timeline.
fn is_local(event: &StreamEvent, own: &ServerName) -> bool {
    event.sendable() && server_of(&event.sender) == Some(own.as_str())
}

/// The other servers an event goes to: those with joined members, and the server of a member
/// event's target (a kicked or banned user's server learns of it), never this one.
fn destinations(event: &StreamEvent, joined: &[String], own: &ServerName) -> BTreeSet<String> {
    let mut servers: BTreeSet<String> = joined.iter().cloned().collect();
    if event.kind == "m.room.member"
        && let Some(target) = event.state_key.as_deref().and_then(server_of)
        && event.membership.as_deref() != Some("join")
    {
        servers.insert(target.to_owned());
    }
    servers.remove(own.as_str());
    servers
}

/// The server part of a user id (after the first `:`; a localpart never contains one).
fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_to_an_hour() {
        let seconds: Vec<u64> = (1..=13).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(
            seconds,
            [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        assert_eq!(backoff(1000), MAX_BACKOFF);
        assert_eq!(backoff(0), FIRST_BACKOFF);
    }

    #[test]
    fn events_go_to_the_other_joined_servers_and_a_member_event_to_its_target() {
        let own = ServerName::parse("hs1").unwrap();
        let event = |kind: &str, state_key: Option<&str>, membership: Option<&str>| StreamEvent {
            nid: 1,
            room_id: "!r:hs1".into(),
            sender: "@a:hs1".into(),
            kind: kind.into(),
            state_key: state_key.map(Into::into),
            membership: membership.map(Into::into),
            outlier: false,
            accepted: true,
        };
        let joined = ["hs1".to_string(), "hs2".to_string()];
        let message = event("m.room.message", None, None);
        assert!(is_local(&message, &own));
        assert_eq!(
            destinations(&message, &joined, &own),
            BTreeSet::from(["hs2".to_string()])
        );
        let kick = event("m.room.member", Some("@c:hs3"), Some("leave"));
        assert_eq!(
            destinations(&kick, &joined, &own),
            BTreeSet::from(["hs2".to_string(), "hs3".to_string()])
        );
        let remote = StreamEvent {
            sender: "@b:hs2".into(),
            ..message.clone()
        };
        assert!(!is_local(&remote, &own));
        let rejected = StreamEvent {
            accepted: false,
            ..message
        };
        assert!(!is_local(&rejected, &own));
    }
}
