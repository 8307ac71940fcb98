//! The WhatsApp bridge: an application service built on the bridge toolkit that mirrors each
//! WhatsApp contact's chat with the business number into a portal room, where the staff answer.
//!
//! - [`config`] — the TOML configuration.
//! - [`cloud`] — the Cloud API client (sending, Graph errors); [`retry`] — its back-off and
//!   the `[delivery]` configuration.
//! - `recovery` — crash safety: sends cut short by a restart are sent, reconciled or explained,
//!   never doubled; inbound copies are re-sent idempotently.
//! - [`webhook`] — Meta's webhooks: handshake, signature, then [`WhatsAppBridge::handle_webhook`].
//! - [`optout`] — contacts who wrote `STOP`.
//! - `portal` — ghosts and portal rooms; `groups` — group conversations' portals and their
//!   addressing; `commands` — the bot's `!wa` commands; `staff` — who may answer and who is
//!   invited (the `staff` and `invite` rules); `window` — the template sent when the 24-hour
//!   window is closed.
//! - `inbound` (with `contacts`) — what each WhatsApp message type becomes in Matrix;
//!   `outbound` — staff redactions, edits and locations; `reactions` — reactions both ways;
//!   `receipts` — staff read receipts as WhatsApp's mark as read.
//! - this module — the [`Bridge`] implementation (Matrix → WhatsApp), inbound messages and
//!   statuses (WhatsApp → Matrix), and [`run`], which serves both listeners.
//!
//! The toolkit store is the loop-breaker: every wamid is claimed before it is bridged in, every
//! Matrix event before it is sent out, so Meta's retried webhooks and the homeserver's retried
//! transactions are bridged once, also across restarts.

pub mod cloud;
mod commands;
pub mod config;
mod contacts;
mod groups;
mod inbound;
pub mod optout;
mod outbound;
mod portal;
mod reactions;
mod receipts;
mod recovery;
pub mod retry;
mod staff;
pub mod webhook;
mod window;

use std::path::Path;
use std::sync::Arc;

use bridge_toolkit::client::Client;
use bridge_toolkit::delivery::Delivery;
use bridge_toolkit::format::{self, Style};
use bridge_toolkit::registration::Registration;
use bridge_toolkit::store::{Direction, Store};
use bridge_toolkit::{Bridge, EphemeralEvent, Error, MatrixEvent, receiver};
use ruma::events::room::message::MessageType;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedUserId, UInt};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use cloud::{CloudApi, SendError};
use config::Config;
use optout::{Keyword, OptOuts};
use portal::Portals;

/// The registration id, bot localpart and ghost prefix.
pub const REGISTRATION_ID: &str = "whatsapp";
pub const BOT_LOCALPART: &str = "whatsappbot";
pub const GHOST_PREFIX: &str = "whatsapp_";

/// Writes the appservice registration for `config` (the bridge's URL is its appservice listen
/// address) to `path`.
pub fn generate_registration(config: &Config, path: &Path) -> Result<Registration, Error> {
    let url = format!("http://{}", config.bridge.appservice_listen);
    let registration = Registration::generate(
        REGISTRATION_ID,
        &url,
        BOT_LOCALPART,
        GHOST_PREFIX,
        &config.homeserver.server_name,
    );
    registration.write(path)?;
    Ok(registration)
}

/// The bridge: what both listeners share.
pub struct WhatsAppBridge {
    pub config: Config,
    client: Client,
    store: Store,
    delivery: Delivery,
    cloud: CloudApi,
    portals: Portals,
    opt_outs: OptOuts,
    commands: bridge_toolkit::commands::Commands,
    /// Webhooks are handled one at a time, so a contact's first messages create one portal.
    inbound: tokio::sync::Mutex<()>,
    reactions: reactions::Reactions,
    read_marks: receipts::ReadMarks,
    /// Sends under way, which the in-doubt sweep leaves alone.
    in_flight: recovery::InFlight,
    invitations: window::Invitations,
}

/// Serves the bridge: the appservice API on `appservice`, Meta's webhooks on `webhooks`, until
/// either server stops.
pub async fn run(
    config: Config,
    registration: Registration,
    appservice: TcpListener,
    webhooks: TcpListener,
) -> Result<(), Error> {
    let store = Store::open(&config.bridge.database)?;
    let opt_outs = OptOuts::open(&config.bridge.database)?;
    let reactions = reactions::Reactions::open(&config.bridge.database)?;
    let read_marks = receipts::ReadMarks::open(&config.bridge.database)?;
    let client = Client::new(
        &config.homeserver.url,
        &registration,
        &config.homeserver.server_name,
    )?;
    let cloud = CloudApi::new(
        &config.graph_url(),
        &config.whatsapp.phone_number_id,
        &config.whatsapp.access_token,
    )
    .map_err(Error::Bridge)?
    .with_backoff(config.delivery.backoff());
    let portals = Portals {
        client: client.clone(),
        store: store.clone(),
        staff: staff::Staff::new(client.clone(), &config.bridge),
    };
    let bridge = Arc::new(WhatsAppBridge {
        commands: commands::commands(
            &config,
            portals.clone(),
            store.clone(),
            cloud.clone(),
            opt_outs.clone(),
        ),
        portals,
        opt_outs,
        delivery: Delivery::new(client.clone(), store.clone()),
        client: client.clone(),
        store: store.clone(),
        cloud,
        config,
        inbound: tokio::sync::Mutex::new(()),
        reactions,
        read_marks,
        in_flight: recovery::InFlight::default(),
        invitations: window::Invitations::default(),
    });
    tokio::spawn(bridge.clone().sweep_forever());
    let as_app = receiver::router(bridge.clone(), &registration.hs_token, store);
    let hook_app = webhook::router(bridge);
    tracing::info!(
        appservice = %appservice.local_addr()?,
        webhooks = %webhooks.local_addr()?,
        "WhatsApp bridge listening"
    );
    let as_server = async { axum::serve(appservice, as_app).await };
    let hook_server = async { axum::serve(webhooks, hook_app).await };
    // The bot is registered once the receiver is up (the homeserver may query it).
    let register = async {
        if let Err(e) = client.ensure_registered(BOT_LOCALPART).await {
            tracing::warn!(error = %e, "cannot register the bridge bot yet");
        }
        // A ping tells the homeserver the bridge is back: what it queued (transactions a
        // stopped run left unanswered) is delivered now instead of after its back-off.
        if let Err(e) = client.ping().await {
            tracing::warn!(error = %e, "cannot ping the homeserver yet");
        }
        std::future::pending::<Result<(), std::io::Error>>().await
    };
    tokio::select! {
        r = as_server => r?,
        r = hook_server => r?,
        r = register => r?,
    }
    Ok(())
}

impl Bridge for WhatsAppBridge {
    async fn handle_event(&self, event: MatrixEvent) -> Result<(), Error> {
        // Staff may count through a team room: its members are read (when stale) before the
        // commands' permission and the check below ask.
        let is_staff = self.portals.staff.is_staff(&event.sender).await;
        // Commands to the bot (`!wa …`, or plain text in a direct chat with it).
        if self
            .commands
            .handle_event(&self.client, &self.store, &event)
            .await?
        {
            return Ok(());
        }
        // The bridge's own users' events are copies of WhatsApp messages: never send them back.
        if self.client.is_bridge_user(&event.sender) {
            return Ok(());
        }
        if !is_staff {
            return staff::refuse(&self.store, &self.delivery, &event).await;
        }
        let Some(wa_id) = self.store.portal_remote(&event.room_id)? else {
            return Ok(());
        };
        if self.outbound_special(&event, &wa_id).await? {
            return Ok(()); // reactions, redactions, edits, locations
        }
        let Some(message) = event.message() else {
            return Ok(());
        };
        let media_kind = match message.msgtype {
            MessageType::Text(_) | MessageType::Emote(_) | MessageType::Notice(_) => None,
            MessageType::Image(_) => Some("image"),
            MessageType::Video(_) => Some("video"),
            MessageType::Audio(_) => Some("audio"),
            MessageType::File(_) => Some("document"),
            _ => return Ok(()),
        };
        if !self.outbound_claim(&event)? {
            return Ok(()); // bridged already, or in doubt
        }
        let mut body = match media_kind {
            None => {
                let text = format::matrix_to_remote(&message, Style::WhatsApp, &|_| None);
                cloud::text_message(&wa_id, &text)
            }
            Some(_) if self.refused_opted_out(&event, &wa_id).await? => return Ok(()),
            Some(kind) => match self.outbound_media(&event, &wa_id, kind).await? {
                Some(body) => body,
                None => return Ok(()), // refused, and the room told
            },
        };
        // A reply to a bridged message quotes it on WhatsApp too.
        if let Some(quoted) = event.content["m.relates_to"]["m.in_reply_to"]["event_id"].as_str()
            && let Ok(quoted) = ruma::EventId::parse(quoted)
            && let Some(wamid) = self.store.remote_for_event(&quoted)?
        {
            body["context"] = json!({"message_id": wamid});
        }
        self.send_out(&event, &body).await
    }

    async fn handle_ephemeral(&self, event: EphemeralEvent) -> Result<(), Error> {
        self.receipt(&event).await
    }

    async fn query_user(&self, user_id: OwnedUserId) -> Result<bool, Error> {
        Ok(self.store.ghost_remote(&user_id)?.is_some())
    }
}

impl WhatsAppBridge {
    /// Sends an already claimed event's WhatsApp form; a refusal is a delivery failure, a
    /// transient error releases the claim and asks the homeserver to retry.
    async fn send_out(&self, event: &MatrixEvent, body: &Value) -> Result<(), Error> {
        if let Some(to) = body["to"].as_str()
            && self.refused_opted_out(event, to).await?
        {
            return Ok(());
        }
        self.deliver(event, body).await
    }

    /// Whether `wa_id` opted out; if so, the claimed `event` is marked failed, the room told.
    async fn refused_opted_out(&self, event: &MatrixEvent, wa_id: &str) -> Result<bool, Error> {
        if !self.opt_outs.is_opted_out(wa_id)? {
            return Ok(false);
        }
        let reason = "the contact opted out (they wrote STOP); nothing is sent to them until \
                      they write START";
        self.delivery
            .failed(&event.room_id, &event.event_id, reason)
            .await?;
        Ok(true)
    }

    /// A Matrix attachment re-uploaded to the Cloud API; answers the message to send, or `None`
    /// when it cannot be sent (the room is told why).
    async fn outbound_media(
        &self,
        event: &MatrixEvent,
        wa_id: &str,
        kind: &str,
    ) -> Result<Option<Value>, Error> {
        let content = &event.content;
        let body = content["body"].as_str().unwrap_or_default();
        let filename = content["filename"].as_str().unwrap_or(body);
        let filename = if filename.is_empty() {
            "attachment"
        } else {
            filename
        };
        // With a `filename`, the body is the caption (Matrix media captions).
        let caption = content["filename"]
            .as_str()
            .filter(|f| *f != body && !body.is_empty())
            .map(|_| body);
        let Some(uri) = content["url"].as_str() else {
            let reason = "encrypted attachments cannot be sent to WhatsApp yet";
            self.delivery
                .failed(&event.room_id, &event.event_id, reason)
                .await?;
            return Ok(None);
        };
        let media = match self.client.download(<&ruma::MxcUri>::from(uri)).await {
            Ok(media) => media,
            Err(e) if e.errcode().is_some() => {
                let reason = format!("the attachment could not be fetched from Matrix: {e}");
                self.delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await?;
                return Ok(None);
            }
            Err(e) => {
                self.store
                    .release_claim(Direction::Outbound, event.event_id.as_str())?;
                return Err(e);
            }
        };
        let mime_type = content["info"]["mimetype"]
            .as_str()
            .map(str::to_owned)
            .or(media.content_type)
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let media_id = match self.cloud.upload(&media.bytes, &mime_type, filename).await {
            Ok(id) => id,
            Err(SendError::Refused { reason, .. }) => {
                self.delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await?;
                return Ok(None);
            }
            Err(SendError::Transient(reason)) => {
                self.store
                    .release_claim(Direction::Outbound, event.event_id.as_str())?;
                return Err(Error::Bridge(reason));
            }
        };
        let mut object = json!({"id": media_id});
        if kind == "document" {
            object["filename"] = json!(filename);
        }
        if let Some(caption) = caption.filter(|_| kind != "audio") {
            object["caption"] = json!(caption);
        }
        let mut message = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": wa_id,
            "type": kind,
        });
        message[kind] = object;
        Ok(Some(message))
    }

    /// Everything of one signed webhook body. An error means "answer non-2xx so Meta retries".
    pub async fn handle_webhook(&self, payload: &Value) -> Result<(), Error> {
        let _one_at_a_time = self.inbound.lock().await;
        if payload["object"] != "whatsapp_business_account" {
            return Ok(());
        }
        for entry in payload["entry"].as_array().into_iter().flatten() {
            for change in entry["changes"].as_array().into_iter().flatten() {
                if change["field"] != "messages" {
                    continue;
                }
                let value = &change["value"];
                for message in value["messages"].as_array().into_iter().flatten() {
                    self.inbound_message(value, message).await?;
                }
                for status in value["statuses"].as_array().into_iter().flatten() {
                    self.status(status).await?;
                }
            }
        }
        Ok(())
    }

    /// One inbound message into its portal, as the contact's ghost, at the WhatsApp time.
    async fn inbound_message(&self, value: &Value, message: &Value) -> Result<(), Error> {
        let (Some(wa_id), Some(wamid)) = (message["from"].as_str(), message["id"].as_str()) else {
            return Ok(());
        };
        // Meta's group webhook reference shows `from` as a phone number with its `+`.
        let wa_id = wa_id.trim_start_matches('+');
        if !valid_wa_id(wa_id) {
            tracing::warn!("webhook message from an invalid WhatsApp id ignored");
            return Ok(());
        }
        // A wamid claimed without a recorded event: a run stopped before recording its copy.
        // It is bridged again, idempotently (see `recovery`).
        let resumed = match self.store.message_by_remote(wamid)? {
            None => false,
            Some(known) if known.direction == Direction::Inbound && known.event_id.is_none() => {
                true
            }
            Some(_) => return Ok(()), // a retried webhook, or the echo of a message sent
        };
        let kind = message["type"].as_str().unwrap_or_default();
        if kind.is_empty() {
            return Ok(());
        }
        let name = value["contacts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["wa_id"].as_str() == Some(wa_id))
            .and_then(|c| c["profile"]["name"].as_str());
        // A message in a group (`group_id` next to `from`) goes to the group's portal.
        let group = message["group_id"].as_str();
        if group.is_some_and(|g| !groups::valid_group_id(g)) {
            tracing::warn!("webhook message with an invalid group id ignored");
            return Ok(());
        }
        let ghost = self.portals.ghost(wa_id, name).await?;
        let room = match group {
            Some(group_id) => self.group_portal(group_id, &ghost).await?,
            None => self.portals.portal(wa_id, name, &ghost).await?,
        };
        if !resumed && !self.store.claim_inbound(wamid, &room)? {
            return Ok(());
        }
        let ts = message["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .and_then(|secs| UInt::new(secs.saturating_mul(1000)))
            .map(MilliSecondsSinceUnixEpoch);
        let sent = async {
            match kind {
                "reaction" => {
                    self.mirror_reaction(wa_id, &ghost, &room, message, ts, wamid)
                        .await
                }
                _ => self
                    .inbound_other(kind, message, &ghost, &room, ts, wamid)
                    .await
                    .map(Some),
            }
        };
        match sent.await {
            Ok(Some(event_id)) => {
                self.store.record_event_id(wamid, &event_id)?;
                // STOP said in a group is said to the group, not to the business.
                if kind == "text" && group.is_none() {
                    let text = message["text"]["body"].as_str().unwrap_or_default();
                    self.opt_out_keyword(wa_id, &room, text).await?;
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.store.release_claim(Direction::Inbound, wamid)?;
                Err(e)
            }
        }
    }

    /// `STOP` / `START` from a contact: recorded, and the staff told in the portal.
    async fn opt_out_keyword(
        &self,
        wa_id: &str,
        room: &ruma::RoomId,
        text: &str,
    ) -> Result<(), Error> {
        let Some(keyword) = optout::keyword(text) else {
            return Ok(());
        };
        let now = u64::from(MilliSecondsSinceUnixEpoch::now().0);
        let stop = keyword == Keyword::Stop;
        if !self.opt_outs.set(wa_id, stop, now)? {
            return Ok(());
        }
        let notice = if stop {
            format!(
                "+{wa_id} wrote STOP: they asked to receive no more messages. The bridge sends \
                 them nothing until they write START."
            )
        } else {
            format!("+{wa_id} wrote START: messages to them are sent again.")
        };
        if let Err(e) = self.client.send_notice(room, &notice).await {
            tracing::warn!(room.id = %room, error = %e, "cannot tell the portal about an opt-out");
        }
        Ok(())
    }

    /// A status of a message the bridge sent.
    async fn status(&self, status: &Value) -> Result<(), Error> {
        let Some(wamid) = status["id"].as_str() else {
            return Ok(());
        };
        self.reconcile_status(status)?;
        let Some(message) = self.store.message_by_remote(wamid)? else {
            return Ok(()); // not ours, or not recorded yet
        };
        let Some(event_id) = message.event_id else {
            return Ok(());
        };
        let room = message.room_id;
        match status["status"].as_str() {
            Some("delivered") => self.delivery.delivered(&room, &event_id).await,
            Some("read") => {
                self.delivery.delivered(&room, &event_id).await?;
                let Some(wa_id) = status["recipient_id"].as_str() else {
                    return Ok(());
                };
                let Some(ghost) = self.store.ghost_user(wa_id)? else {
                    return Ok(());
                };
                if let Err(e) = self.client.read_receipt(&ghost, &room, &event_id).await {
                    tracing::warn!(room.id = %room, error = %e, "cannot show a read receipt");
                }
                Ok(())
            }
            Some("failed") => {
                let error = &status["errors"][0];
                let code = error["code"].as_i64().unwrap_or_default();
                let details = error["error_data"]["details"]
                    .as_str()
                    .or_else(|| error["title"].as_str())
                    .unwrap_or("unknown error");
                let reason = cloud::reason_for(code, details);
                self.delivery.failed(&room, &event_id, &reason).await
            }
            _ => Ok(()),
        }
    }
}

/// A WhatsApp id is the phone number in digits only; it becomes a Matrix localpart.
pub(crate) fn valid_wa_id(wa_id: &str) -> bool {
    !wa_id.is_empty() && wa_id.len() <= 20 && wa_id.bytes().all(|b| b.is_ascii_digit())
}
