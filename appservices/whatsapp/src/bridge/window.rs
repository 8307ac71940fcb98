//! The 24-hour customer-service window. Outside it WhatsApp takes only approved templates and
//! refuses anything else with error 131047. With `[bridge.window_template]` configured, a staff
//! message refused for that reason goes out as the template instead: carrying the message's text
//! in the template's one body placeholder (`include_text`), in which case the message counts as
//! sent and its statuses apply; or, without the text, as an invitation to write back, sent once
//! per contact and day, in which case the message itself stays undelivered and the room is told.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bridge_toolkit::{Error, MatrixEvent};
use serde_json::{Value, json};

use super::WhatsAppBridge;
use super::cloud::CallError;
use super::commands::template_message;

/// The refusal code of a free-form message outside the window.
pub const WINDOW_CLOSED: i64 = 131047;

/// How long an invitation template stands before another one may be sent to the same contact.
const INVITATION_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// When each contact was last sent an invitation (kept in memory: a restart may send one more).
#[derive(Default)]
pub struct Invitations(Mutex<HashMap<String, Instant>>);

impl Invitations {
    /// Whether an invitation may go to `wa_id` now; if so, it is recorded as sent.
    fn take(&self, wa_id: &str) -> bool {
        let mut sent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match sent.get(wa_id) {
            Some(at) if now.duration_since(*at) < INVITATION_INTERVAL => false,
            _ => {
                sent.insert(wa_id.to_owned(), now);
                true
            }
        }
    }

    /// Forgets a recorded invitation that could not be sent.
    fn forget(&self, wa_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(wa_id);
    }
}

/// The text a refused message carries into the template: a text message's body.
fn message_text(refused: &Value) -> Option<&str> {
    (refused["type"] == "text")
        .then(|| refused["text"]["body"].as_str())
        .flatten()
        .filter(|text| !text.trim().is_empty())
}

impl WhatsAppBridge {
    /// Handles a staff message refused with 131047: the configured template goes out, or the
    /// message is marked failed with `reason`.
    pub(super) async fn window_closed(
        &self,
        event: &MatrixEvent,
        refused: &Value,
        reason: &str,
    ) -> Result<(), Error> {
        let (Some(window), Some(to)) =
            (&self.config.bridge.window_template, refused["to"].as_str())
        else {
            return self
                .delivery
                .failed(&event.room_id, &event.event_id, reason)
                .await;
        };
        if refused["type"] == "reaction" {
            return self
                .delivery
                .failed(&event.room_id, &event.event_id, reason)
                .await;
        }
        let language = window
            .language
            .as_deref()
            .unwrap_or(&self.config.bridge.template_language);
        let carried = if window.include_text {
            let Some(text) = message_text(refused) else {
                let reason = format!(
                    "{reason}; only a text message can go out in the template {}",
                    window.name
                );
                return self
                    .delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await;
            };
            Some(text.to_owned())
        } else {
            if !self.invitations.take(to) {
                let reason = format!(
                    "{reason}; the template {} asking them to write back was sent already",
                    window.name
                );
                return self
                    .delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await;
            }
            None
        };
        let parameters: Vec<String> = carried.iter().cloned().collect();
        let mut template = template_message(to, &window.name, language, &parameters);
        if carried.is_some() {
            // The template stands for the message: its statuses are the message's.
            template["biz_opaque_callback_data"] = json!(event.event_id);
        }
        match self.cloud.send_message(&template).await {
            Ok(wamid) if carried.is_some() => {
                self.store.record_remote_id(&event.event_id, &wamid)?;
                let notice = format!(
                    "More than 24 hours have passed since +{to} last wrote, so this message went \
                     out in the approved template {}.",
                    window.name
                );
                self.client
                    .send_notice(&event.room_id, &notice)
                    .await
                    .map(|_| ())
            }
            Ok(_) => {
                let reason = format!(
                    "{reason}; the template {} asking them to write back was sent instead — send \
                     the message again once they answer",
                    window.name
                );
                self.delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await
            }
            Err(e) => {
                if carried.is_none() {
                    self.invitations.forget(to);
                }
                let why = match e {
                    CallError::Refused { reason, .. } => reason,
                    CallError::Retryable(reason)
                    | CallError::Transient(reason)
                    | CallError::InDoubt(reason) => reason,
                };
                let reason = format!(
                    "{reason}; the template {} could not be sent either: {why}",
                    window.name
                );
                self.delivery
                    .failed(&event.room_id, &event.event_id, &reason)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_text_body_is_carried() {
        let text = json!({"type": "text", "text": {"body": "See you at 3"}});
        assert_eq!(message_text(&text), Some("See you at 3"));
        let image = json!({"type": "image", "image": {"id": "1", "caption": "x"}});
        assert_eq!(message_text(&image), None);
        let blank = json!({"type": "text", "text": {"body": "  "}});
        assert_eq!(message_text(&blank), None);
    }

    #[test]
    fn one_invitation_per_contact_and_day() {
        let invitations = Invitations::default();
        assert!(invitations.take("447700900123"));
        assert!(!invitations.take("447700900123"));
        assert!(invitations.take("447700900999"));
        invitations.forget("447700900123");
        assert!(invitations.take("447700900123"));
    }
}
