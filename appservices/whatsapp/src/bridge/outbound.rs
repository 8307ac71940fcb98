//! Staff events in portals beyond plain messages and media: reactions (see [`super::reactions`]),
//! redactions, edits and locations.
//!
//! The Cloud API cannot edit or delete a message a business sent (there is no such call; only a
//! reaction can be withdrawn, with an empty emoji). So a staff edit or redaction of a message
//! that reached WhatsApp is not sent: it is recorded as failed, and the bot answers the original
//! message with a notice saying the contact still sees it as sent. A redaction of a contact's
//! message only hides the Matrix copy (the contact's phone keeps it), which needs no notice.

use bridge_toolkit::store::{DeliveryState, Direction};
use bridge_toolkit::{Error, MatrixEvent};
use ruma::EventId;
use ruma::events::room::message::RoomMessageEventContent;
use serde_json::{Value, json};

use super::WhatsAppBridge;

/// Why an edit does not reach WhatsApp.
pub const EDIT_REASON: &str = "WhatsApp does not let a business edit a message it sent, so the \
                               contact still sees the original. Send the correction as a new \
                               message.";
/// Why a deletion does not reach WhatsApp.
pub const DELETE_REASON: &str = "WhatsApp does not let a business delete a message it sent, so \
                                 the contact can still read it.";

impl WhatsAppBridge {
    /// Handles a staff event of a portal that is not a plain message or attachment; false when
    /// it is one (left to the caller).
    pub(super) async fn outbound_special(
        &self,
        event: &MatrixEvent,
        wa_id: &str,
    ) -> Result<bool, Error> {
        match event.kind.as_str() {
            "m.reaction" => self.outbound_reaction(event, wa_id).await?,
            "m.room.redaction" => self.outbound_redaction(event).await?,
            "m.room.message" if event.content["m.relates_to"]["rel_type"] == "m.replace" => {
                self.outbound_edit(event).await?
            }
            "m.room.message" if event.content["msgtype"] == "m.location" => {
                self.outbound_location(event, wa_id).await?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A staff redaction: of their reaction, the reaction is withdrawn on WhatsApp; of a message
    /// that reached WhatsApp, the room is told it stays there.
    async fn outbound_redaction(&self, event: &MatrixEvent) -> Result<(), Error> {
        let Some(target) = event.redacts() else {
            return Ok(());
        };
        if let Some(reaction) = self.reactions.by_event(&target)? {
            if reaction.side == super::reactions::Side::Business {
                return self.withdraw_reaction(event, &reaction).await;
            }
            return Ok(());
        }
        if self.reached_whatsapp(&target)? {
            self.not_sent(event, &target, "Not deleted on WhatsApp", DELETE_REASON)
                .await?;
        }
        Ok(())
    }

    /// A staff edit (`m.replace`) of a message that reached WhatsApp: explained, not sent.
    /// Edits of anything else (a failed message, a contact's message) are left alone.
    async fn outbound_edit(&self, event: &MatrixEvent) -> Result<(), Error> {
        let Some(target) = event.content["m.relates_to"]["event_id"]
            .as_str()
            .and_then(|t| EventId::parse(t).ok())
        else {
            return Ok(());
        };
        if self.reached_whatsapp(&target)? {
            self.not_sent(event, &target, "Edit not sent to WhatsApp", EDIT_REASON)
                .await?;
        }
        Ok(())
    }

    /// Whether `event` is a staff message the Cloud API accepted.
    fn reached_whatsapp(&self, event: &EventId) -> Result<bool, Error> {
        Ok(self.store.message_by_event(event)?.is_some_and(|m| {
            m.direction == Direction::Outbound
                && m.remote_id.is_some()
                && !matches!(m.delivery, DeliveryState::Failed(_))
        }))
    }

    /// Records the claimed `event` as failed and answers `original` (what the staff see) with
    /// the bot's notice `⚠ <what>: <reason>`. Once per event, also when a transaction is retried.
    async fn not_sent(
        &self,
        event: &MatrixEvent,
        original: &EventId,
        what: &str,
        reason: &str,
    ) -> Result<(), Error> {
        if !self.outbound_claim(event)? {
            return Ok(());
        }
        self.store
            .set_delivery(&event.event_id, &DeliveryState::Failed(reason.to_owned()))?;
        let mut notice = serde_json::to_value(RoomMessageEventContent::notice_plain(format!(
            "⚠ {what}: {reason}"
        )))
        .map_err(|e| Error::Invalid(e.to_string()))?;
        notice["m.relates_to"] = json!({"m.in_reply_to": {"event_id": original}});
        let bot = self.client.bot();
        if let Err(e) = self
            .client
            .send_event(bot, &event.room_id, "m.room.message", &notice, None)
            .await
        {
            tracing::warn!(room.id = %event.room_id, event.id = %event.event_id, error = %e,
                "cannot tell the room an edit or deletion stays off WhatsApp");
        }
        Ok(())
    }

    /// A staff `m.location` becomes a WhatsApp `location` message (the MSC3488 description as
    /// its name); a location without a readable `geo:` URI is a delivery failure.
    async fn outbound_location(&self, event: &MatrixEvent, wa_id: &str) -> Result<(), Error> {
        if !self.outbound_claim(event)? {
            return Ok(());
        }
        let Some(mut body) = location_message(wa_id, &event.content) else {
            let reason = "the location has no valid geo: URI";
            return self
                .delivery
                .failed(&event.room_id, &event.event_id, reason)
                .await;
        };
        if let Some(quoted) = event.content["m.relates_to"]["m.in_reply_to"]["event_id"].as_str()
            && let Ok(quoted) = EventId::parse(quoted)
            && let Some(wamid) = self.store.remote_for_event(&quoted)?
        {
            body["context"] = json!({"message_id": wamid});
        }
        self.send_out(event, &body).await
    }
}

/// `(latitude, longitude)` of a `geo:` URI (RFC 5870: `geo:lat,long[,alt][;params]`).
pub fn parse_geo_uri(uri: &str) -> Option<(f64, f64)> {
    let coordinates = uri.strip_prefix("geo:")?.split(';').next()?;
    let mut parts = coordinates.split(',');
    let latitude: f64 = parts.next()?.trim().parse().ok()?;
    let longitude: f64 = parts.next()?.trim().parse().ok()?;
    ((-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude))
        .then_some((latitude, longitude))
}

/// The WhatsApp `location` message for an `m.location` content.
pub fn location_message(wa_id: &str, content: &Value) -> Option<Value> {
    let extensible = &content["org.matrix.msc3488.location"];
    let uri = content["geo_uri"]
        .as_str()
        .or_else(|| extensible["uri"].as_str())?;
    let (latitude, longitude) = parse_geo_uri(uri)?;
    let mut location = json!({"latitude": latitude, "longitude": longitude});
    if let Some(name) = extensible["description"]
        .as_str()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        location["name"] = json!(name);
    }
    Some(json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_id,
        "type": "location",
        "location": location,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_geo_uris() {
        assert_eq!(
            parse_geo_uri("geo:51.5074,-0.1278"),
            Some((51.5074, -0.1278))
        );
        assert_eq!(parse_geo_uri("geo:51.5,-0.12,30;u=35"), Some((51.5, -0.12)));
        assert_eq!(parse_geo_uri("geo:91,0"), None);
        assert_eq!(parse_geo_uri("geo:abc"), None);
        assert_eq!(parse_geo_uri("https://maps.example/51,0"), None);
    }

    #[test]
    fn an_element_location_becomes_a_whatsapp_location() {
        let content = json!({
            "msgtype": "m.location", "body": "Location geo:51.5,-0.12;u=35",
            "geo_uri": "geo:51.5,-0.12;u=35",
            "org.matrix.msc3488.location": {"uri": "geo:51.5,-0.12;u=35", "description": "Front door"},
            "org.matrix.msc3488.asset": {"type": "m.pin"},
        });
        assert_eq!(
            location_message("447700900123", &content).unwrap()["location"],
            json!({"latitude": 51.5, "longitude": -0.12, "name": "Front door"})
        );
        assert_eq!(
            location_message("1", &json!({"msgtype": "m.location"})),
            None
        );
    }
}
