//! Crash safety: what the bridge does so that being stopped at any moment (a crash, `SIGKILL`, a
//! redeploy) loses nothing and sends nothing twice.
//!
//! **Outbound** (Matrix → WhatsApp). An event is claimed in the store before anything happens
//! and marked *send started* just before the `POST /messages`
//! ([`bridge_toolkit::store::Store::start_send`]). When the
//! homeserver redelivers a transaction after a restart, each event is looked up
//! ([`WhatsAppBridge::outbound_claim`]):
//! - never claimed: claimed and sent;
//! - claimed, no send begun (the bridge stopped before the call): sent now;
//! - send begun, no wamid recorded (stopped during the call, or the answer was lost): **in
//!   doubt**. Meta may have it, so it is not sent again. Every message carries its Matrix event
//!   id in `biz_opaque_callback_data`, which the Cloud API echoes in status webhooks; a status
//!   for a wamid the bridge does not know that names an in-doubt event records the mapping
//!   ([`WhatsAppBridge::reconcile_status`]), and the status then applies as usual. An in-doubt
//!   message still without a status after `delivery.in_doubt_grace_secs` is marked failed, and
//!   the room told that it may not have reached WhatsApp ([`WhatsAppBridge::sweep_in_doubt`]).
//! - sent, delivered or failed: nothing to do.
//!
//! **Inbound** (WhatsApp → Matrix). A wamid claimed but without a recorded event (the bridge
//! stopped between the Matrix send and recording it) is bridged again when Meta retries the
//! webhook, with a Matrix transaction id derived from the wamid ([`inbound_txn_id`]): the
//! homeserver keeps one event per sender and transaction id, so the retry answers the event
//! the first attempt stored, if it did.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridge_toolkit::Error;
use bridge_toolkit::MatrixEvent;
use bridge_toolkit::store::{Direction, OutboundProgress};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};

use super::WhatsAppBridge;
use super::cloud::CallError;
use super::groups;
use super::window;

/// What the room is told of a message whose send was cut short and never confirmed.
pub const IN_DOUBT_REASON: &str = "it may not have reached WhatsApp: the bridge restarted (or \
     lost its connection) while sending it, and WhatsApp never confirmed it. Send it again if \
     it matters";

/// The events whose send is under way in this run: in doubt in the store, but not cut short.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<OwnedEventId>>);

impl InFlight {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<OwnedEventId>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn contains(&self, event_id: &EventId) -> bool {
        self.set().contains(event_id)
    }
}

/// Holds an event in [`InFlight`] until dropped.
struct Sending<'a> {
    in_flight: &'a InFlight,
    event_id: OwnedEventId,
}

impl<'a> Sending<'a> {
    fn new(in_flight: &'a InFlight, event_id: &EventId) -> Sending<'a> {
        in_flight.set().insert(event_id.to_owned());
        Sending {
            in_flight,
            event_id: event_id.to_owned(),
        }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.in_flight.set().remove(&self.event_id);
    }
}

/// The Matrix transaction id of the copy of inbound message `wamid`: the same on every attempt.
pub fn inbound_txn_id(wamid: &str) -> String {
    format!("wa.{wamid}")
}

impl WhatsAppBridge {
    /// Claims `event` for sending, or takes over the claim of a run that stopped before sending
    /// it. False when it must not be sent: bridged already, in doubt, or a copy the bridge made.
    pub(super) fn outbound_claim(&self, event: &MatrixEvent) -> Result<bool, Error> {
        if self.store.claim_outbound(&event.event_id, &event.room_id)? {
            return Ok(true);
        }
        match self.store.outbound_progress(&event.event_id)? {
            Some(OutboundProgress::Claimed) => {
                tracing::info!(event.id = %event.event_id, "sending a message a stopped run had claimed");
                Ok(true)
            }
            Some(OutboundProgress::InDoubt { .. }) => {
                tracing::info!(event.id = %event.event_id,
                    "a message whose send was cut short: waiting for its status, not resending");
                Ok(false)
            }
            Some(OutboundProgress::Settled) | None => Ok(false),
        }
    }

    /// Sends a claimed event's WhatsApp form (retrying what is worth it), marking the send
    /// started first. A refusal is a delivery failure; nothing sent and retries exhausted gives
    /// the homeserver the transaction back; a lost answer leaves the message in doubt.
    pub(super) async fn deliver(&self, event: &MatrixEvent, body: &Value) -> Result<(), Error> {
        let mut body = body.clone();
        groups::address(&mut body);
        body["biz_opaque_callback_data"] = json!(event.event_id);
        let _sending = Sending::new(&self.in_flight, &event.event_id);
        self.store.start_send(&event.event_id)?;
        match self.cloud.send_message(&body).await {
            Ok(wamid) => self.store.record_remote_id(&event.event_id, &wamid),
            Err(CallError::Refused { code, reason }) if code == window::WINDOW_CLOSED => {
                self.window_closed(event, &body, &reason).await
            }
            Err(CallError::Refused { reason, .. }) => {
                self.delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await
            }
            Err(CallError::Retryable(reason) | CallError::Transient(reason)) => {
                self.store
                    .release_claim(Direction::Outbound, event.event_id.as_str())?;
                Err(Error::Bridge(reason))
            }
            Err(CallError::InDoubt(reason)) => {
                tracing::warn!(event.id = %event.event_id, %reason,
                    "a send's outcome is unknown: waiting for its status");
                Ok(())
            }
        }
    }

    /// A status for a wamid the bridge never recorded, naming (in `biz_opaque_callback_data`)
    /// an event whose send was cut short: the mapping is recorded, so the status applies.
    pub(super) fn reconcile_status(&self, status: &Value) -> Result<(), Error> {
        let (Some(wamid), Some(named)) = (
            status["id"].as_str(),
            status["biz_opaque_callback_data"].as_str(),
        ) else {
            return Ok(());
        };
        let Ok(event_id) = EventId::parse(named) else {
            return Ok(());
        };
        if self.store.message_by_remote(wamid)?.is_some() {
            return Ok(());
        }
        if let Some(OutboundProgress::InDoubt { .. } | OutboundProgress::Claimed) =
            self.store.outbound_progress(&event_id)?
        {
            tracing::info!(event.id = %event_id, "a status confirmed a send that was cut short");
            self.store.record_remote_id(&event_id, wamid)?;
        }
        Ok(())
    }

    /// Marks failed, and tells the room about, every in-doubt message whose send began more
    /// than the grace period ago and that no status has confirmed.
    pub(super) async fn sweep_in_doubt(&self) -> Result<(), Error> {
        let grace = self.config.delivery.in_doubt_grace();
        let cutoff = now_ms().saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
        for message in self.store.in_doubt(cutoff)? {
            let Some(event_id) = message.event_id else {
                continue;
            };
            if self.in_flight.contains(&event_id) {
                continue; // still being sent (or retried) by this run
            }
            tracing::warn!(event.id = %event_id, "no status for a send that was cut short");
            self.delivery
                .failed(&message.room_id, &event_id, IN_DOUBT_REASON)
                .await?;
        }
        Ok(())
    }

    /// Sweeps in-doubt messages now and then, for the life of the bridge.
    pub(super) async fn sweep_forever(self: Arc<Self>) {
        let grace = self.config.delivery.in_doubt_grace();
        let every = (grace / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        loop {
            if let Err(e) = self.sweep_in_doubt().await {
                tracing::warn!(error = %e, "cannot settle in-doubt messages yet");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Reacts to `target` with `emoji` as the ghost, idempotently for inbound reaction `wamid`.
    pub(super) async fn inbound_reaction(
        &self,
        ghost: &UserId,
        room: &RoomId,
        target: &EventId,
        emoji: &str,
        ts: Option<MilliSecondsSinceUnixEpoch>,
        wamid: &str,
    ) -> Result<OwnedEventId, Error> {
        let content = json!({
            "m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": emoji}
        });
        self.client
            .send_event_with_txn(
                ghost,
                room,
                "m.reaction",
                &content,
                ts,
                &inbound_txn_id(wamid),
            )
            .await
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbound_message_keeps_its_transaction_id() {
        assert_eq!(inbound_txn_id("wamid.HBg="), inbound_txn_id("wamid.HBg="));
        assert_ne!(inbound_txn_id("wamid.a"), inbound_txn_id("wamid.b"));
    }
}
