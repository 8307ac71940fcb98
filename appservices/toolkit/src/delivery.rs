//! The delivery state of each Matrix message a bridge sends to the remote network — pending,
//! delivered, failed with a reason — kept in the [`Store`] and shown to the Matrix sender.
//!
//! How it shows, chosen for what every Matrix client renders today:
//! - **delivered**: the bridge bot sends a read receipt (`m.read`) on the message, so the
//!   sender sees the bot's avatar under it (what mautrix bridges call delivery receipts). The
//!   remote person having *read* it is the ghost's own read receipt, which the bridge sends
//!   with [`Client::read_receipt`] when the network reports it.
//! - **failed**: the bot answers the message with an `m.notice` reply, `⚠ Not delivered: <reason>`
//!   (mautrix's message error notices). A notice reply is visible in every client and names the
//!   message it is about; a reaction could not say why.
//!
//! Beeper's `com.beeper.message_send_status` events were not chosen: mainstream clients
//! (Element and others) do not show them. Each state is shown once: a repeated
//! report of the same state (a retried status webhook) changes nothing.
//!
//! The state is recorded first; showing it is best effort (the bot must be in the room): a
//! receipt or notice the homeserver refuses is logged, not returned, so it never makes a bridge
//! retry — and perhaps resend — a message that reached the remote network.

use ruma::events::room::message::RoomMessageEventContent;
use ruma::{EventId, RoomId};
use serde_json::{Value, json};

use crate::Error;
use crate::client::Client;
pub use crate::store::DeliveryState;
use crate::store::Store;

/// Records delivery states and shows them in the room.
#[derive(Clone)]
pub struct Delivery {
    client: Client,
    store: Store,
}

impl Delivery {
    pub fn new(client: Client, store: Store) -> Delivery {
        Delivery { client, store }
    }

    /// The state of an outbound event, if it was claimed.
    pub fn state(&self, event: &EventId) -> Result<Option<DeliveryState>, Error> {
        Ok(self.store.message_by_event(event)?.map(|m| m.delivery))
    }

    /// The remote network accepted `event`: recorded, and the bot's read receipt sent.
    pub async fn delivered(&self, room: &RoomId, event: &EventId) -> Result<(), Error> {
        if self.state(event)? == Some(DeliveryState::Delivered) {
            return Ok(());
        }
        self.store.set_delivery(event, &DeliveryState::Delivered)?;
        if let Err(e) = self
            .client
            .read_receipt(self.client.bot(), room, event)
            .await
        {
            tracing::warn!(room.id = %room, event.id = %event, error = %e,
                "cannot show a delivery with the bot's receipt");
        }
        Ok(())
    }

    /// The remote network refused `event` for good: recorded, and the bot's notice reply sent.
    pub async fn failed(&self, room: &RoomId, event: &EventId, reason: &str) -> Result<(), Error> {
        if matches!(self.state(event)?, Some(DeliveryState::Failed(_))) {
            return Ok(());
        }
        self.store
            .set_delivery(event, &DeliveryState::Failed(reason.to_owned()))?;
        let notice = failure_notice(event, reason);
        if let Err(e) = self
            .client
            .send_event(self.client.bot(), room, "m.room.message", &notice, None)
            .await
        {
            tracing::warn!(room.id = %room, event.id = %event, error = %e,
                "cannot show a delivery failure with the bot's notice");
        }
        Ok(())
    }
}

/// The content of the notice answering a message that could not be delivered.
pub fn failure_notice(event: &EventId, reason: &str) -> Value {
    let mut content = serde_json::to_value(RoomMessageEventContent::notice_plain(format!(
        "⚠ Not delivered: {reason}"
    )))
    .unwrap_or_else(|_| json!({}));
    content["m.relates_to"] = json!({"m.in_reply_to": {"event_id": event}});
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::event_id;

    #[test]
    fn a_failure_notice_replies_with_the_reason() {
        let notice = failure_notice(event_id!("$m"), "outside the 24-hour window");
        assert_eq!(notice["msgtype"], "m.notice");
        assert_eq!(
            notice["body"],
            "⚠ Not delivered: outside the 24-hour window"
        );
        assert_eq!(notice["m.relates_to"]["m.in_reply_to"]["event_id"], "$m");
    }
}
