//! The bridge bot's management commands (`!wa <command>`, or plain text in a direct chat with
//! the bot), for the staff only: `help` (built in), `status`, `start <phone>`, which opens
//! a portal to a WhatsApp number before they wrote, and `template <name> [language]` in a
//! portal, which sends an approved template (the only thing WhatsApp allows outside the
//! 24-hour window).

use bridge_toolkit::commands::Commands;
use bridge_toolkit::store::{Direction, Store};

use serde_json::json;

use super::cloud::{CloudApi, SendError};
use super::config::Config;
use super::portal::Portals;
use super::valid_wa_id;

pub fn commands(config: &Config, portals: Portals, store: Store, cloud: CloudApi) -> Commands {
    let template_store = store.clone();
    let staff = config.bridge.staff.clone();
    let status_line = format!(
        "Bridging the WhatsApp Business number with phone number id {} (Cloud API {}).",
        config.whatsapp.phone_number_id, config.whatsapp.api_version
    );
    Commands::new("!wa")
        .permit(move |user| staff.contains(&user.to_owned()))
        .add("status", "— the bridge's account and pending messages", move |_| {
            let store = store.clone();
            let status_line = status_line.clone();
            async move {
                let outbound = store.pending(Direction::Outbound)?.len();
                let inbound = store.pending(Direction::Inbound)?.len();
                Ok(format!(
                    "{status_line} Messages in flight: {outbound} to WhatsApp, {inbound} from WhatsApp."
                ))
            }
        })
        .add(
            "start",
            "<phone> — opens the chat with a WhatsApp number (digits, with country code)",
            move |context| {
                let portals = portals.clone();
                async move {
                    // The number may be written with spaces: `start +44 7700 900123`.
                    let phone = context.raw_args.trim();
                    if phone.is_empty() {
                        return Ok("Usage: start <phone>, e.g. start +447700900123".to_owned());
                    }
                    let wa_id: String = phone
                        .chars()
                        .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')'))
                        .collect();
                    if !valid_wa_id(&wa_id) || wa_id.len() < 7 {
                        return Ok(format!("{phone} is not a phone number."));
                    }
                    let ghost = portals.ghost(&wa_id, None).await?;
                    let room = portals.portal(&wa_id, None, &ghost).await?;
                    context
                        .client
                        .invite(context.client.bot(), &room, &context.sender)
                        .await?;
                    Ok(format!(
                        "The chat with +{wa_id} is {room}. WhatsApp only allows a free-form \
                         message once they have written in the last 24 hours."
                    ))
                }
            },
        )
        .add(
            "template",
            "<name> [language] — in a portal: sends an approved template (allowed outside the 24-hour window)",
            move |context| {
                let store = template_store.clone();
                let cloud = cloud.clone();
                async move {
                    let Some(name) = context.args.first() else {
                        return Ok("Usage: template <name> [language], e.g. template hello_world en_US".to_owned());
                    };
                    let language = context.args.get(1).map(String::as_str).unwrap_or("en_US");
                    let Some(wa_id) = store.portal_remote(&context.room_id)? else {
                        return Ok("Run this in the portal room of a WhatsApp chat.".to_owned());
                    };
                    let message = json!({
                        "messaging_product": "whatsapp",
                        "recipient_type": "individual",
                        "to": wa_id,
                        "type": "template",
                        "template": {"name": name, "language": {"code": language}},
                    });
                    match cloud.send(&message).await {
                        Ok(_) => Ok(format!("Template {name} sent to +{wa_id}.")),
                        Err(SendError::Refused { reason, .. } | SendError::Transient(reason)) => {
                            Ok(format!("⚠ Template {name} not sent: {reason}"))
                        }
                    }
                }
            },
        )
}
