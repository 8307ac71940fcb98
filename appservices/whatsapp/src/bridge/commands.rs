//! The bridge bot's management commands (`!wa <command>`, or plain text in a direct chat with
//! the bot), for the staff only (see [`super::staff`]):
//!
//! - `help` (built in) — the list;
//! - `status` — the account, whether the Cloud API answers, what is in flight, the rules;
//! - `start <phone>` — opens the portal of a number that has not written yet;
//! - `template <name> [<phone>] [lang=<code>] [parameters…]` — sends an approved template (the
//!   only thing WhatsApp allows outside the 24-hour window), its body's `{{1}}`, `{{2}}`, …
//!   filled with the parameters; to the portal's contact, or to `<phone>` through its portal;
//! - `opt-out` — the contacts who wrote STOP, and since when.
//!
//! A template is shown in its portal as a notice from the bot, which stands for it in the store:
//! its delivery (the bot's receipt) or failure (a reply saying why) shows on that notice.

use bridge_toolkit::Error;
use bridge_toolkit::commands::{CommandContext, Commands};
use bridge_toolkit::delivery::Delivery;
use bridge_toolkit::store::{Direction, Store};
use ruma::{OwnedRoomId, UserId};
use serde_json::{Value, json};

use super::cloud::{CloudApi, SendError};
use super::config::Config;
use super::optout::OptOuts;
use super::portal::Portals;
use super::valid_wa_id;

/// What the commands share; clones share everything.
#[derive(Clone)]
struct Tools {
    portals: Portals,
    store: Store,
    cloud: CloudApi,
    opt_outs: OptOuts,
    delivery: Delivery,
    template_language: String,
    account: String,
}

pub fn commands(
    config: &Config,
    portals: Portals,
    store: Store,
    cloud: CloudApi,
    opt_outs: OptOuts,
) -> Commands {
    let staff = portals.staff.clone();
    let tools = Tools {
        delivery: Delivery::new(portals.client.clone(), store.clone()),
        portals,
        store,
        cloud,
        opt_outs,
        template_language: config.bridge.template_language.clone(),
        account: format!(
            "phone number id {} (Cloud API {})",
            config.whatsapp.phone_number_id, config.whatsapp.api_version
        ),
    };
    let (status, start, template, opt_out) = (tools.clone(), tools.clone(), tools.clone(), tools);
    // The staff rooms' members were read for this sender just before (`handle_event`).
    Commands::new("!wa")
        .permit(move |user| staff.is_known_staff(user))
        .add(
            "status",
            "— the account, whether the Cloud API answers, messages in flight, who is staff",
            move |_| status.clone().status(),
        )
        .add(
            "start",
            "<phone> — opens the chat with a WhatsApp number (with country code)",
            move |context| start.clone().start(context),
        )
        .add(
            "template",
            "<name> [<phone>] [lang=<code>] [parameters…] — sends an approved template, \
             allowed outside the 24-hour window; `{{1}}`, `{{2}}`… are filled with the \
             parameters (\"quoted\" when they have spaces); in a portal the phone may be left out",
            move |context| template.clone().template(context),
        )
        .add(
            "opt-out",
            "— the contacts who wrote STOP (nothing is sent to them until they write START)",
            move |_| opt_out.clone().opt_outs(),
        )
}

impl Tools {
    async fn status(self) -> Result<String, Error> {
        let cloud = match self.cloud.phone_number().await {
            Ok(number) => format!(
                "Cloud API: reachable; {} {} (quality {}).",
                number["verified_name"]
                    .as_str()
                    .unwrap_or("(no verified name)"),
                number["display_phone_number"].as_str().unwrap_or_default(),
                number["quality_rating"].as_str().unwrap_or("unknown"),
            ),
            Err(SendError::Refused { reason, .. } | SendError::Transient(reason)) => {
                format!("⚠ Cloud API: not usable: {reason}.")
            }
        };
        let outbound = self.store.pending(Direction::Outbound)?.len();
        let inbound = self.store.pending(Direction::Inbound)?.len();
        let opted_out = self.opt_outs.list()?.len();
        Ok(format!(
            "Bridging the WhatsApp Business number with {}.\n{cloud}\nAwaiting delivery: \
             {outbound} to WhatsApp (no delivery report yet), {inbound} from WhatsApp.\n\
             Opted out (STOP): {opted_out}.\n{}",
            self.account,
            self.portals.staff.describe(),
        ))
    }

    async fn start(self, context: CommandContext) -> Result<String, Error> {
        // The number may be written with spaces: `start +44 7700 900123`.
        let phone = context.raw_args.trim();
        if phone.is_empty() {
            return Ok("Usage: start <phone>, e.g. start +447700900123".to_owned());
        }
        let Some(wa_id) = wa_id_of(phone) else {
            return Ok(format!("{phone} is not a phone number."));
        };
        let room = self.open_portal(&wa_id, &context.sender).await?;
        Ok(format!(
            "The chat with +{wa_id} is {room}. WhatsApp only allows a free-form message once \
             they have written in the last 24 hours; before that, send a template."
        ))
    }

    async fn template(self, context: CommandContext) -> Result<String, Error> {
        let portal = self.store.portal_remote(&context.room_id)?;
        let request = match TemplateRequest::parse(&context.args, portal.is_some()) {
            Ok(request) => request,
            Err(usage) => return Ok(usage),
        };
        let (wa_id, room) = match (&request.phone, portal) {
            (Some(phone), _) => {
                let Some(wa_id) = wa_id_of(phone) else {
                    return Ok(format!("{phone} is not a phone number."));
                };
                let room = self.open_portal(&wa_id, &context.sender).await?;
                (wa_id, room)
            }
            (None, Some(wa_id)) => (wa_id, context.room_id.clone()),
            (None, None) => return Ok(TemplateRequest::usage()),
        };
        let name = &request.name;
        if self.opt_outs.is_opted_out(&wa_id)? {
            return Ok(format!(
                "⚠ Template {name} not sent: +{wa_id} opted out (they wrote STOP); nothing is \
                 sent to them until they write START."
            ));
        }
        let language = request
            .language
            .clone()
            .unwrap_or_else(|| self.template_language.clone());
        let mut message = template_message(&wa_id, name, &language, &request.parameters);
        super::groups::address(&mut message);
        // The notice stands for the template in the portal, so its statuses show there.
        let client = &self.portals.client;
        let notice = client
            .send_notice(
                &room,
                &template_notice(&request, &language, &context.sender),
            )
            .await?;
        self.store.claim_outbound(&notice, &room)?;
        let elsewhere = if room == context.room_id {
            String::new()
        } else {
            format!(" in {room}")
        };
        match self.cloud.send(&message).await {
            Ok(wamid) => {
                self.store.record_remote_id(&notice, &wamid)?;
                Ok(format!("Template {name} sent to +{wa_id}{elsewhere}."))
            }
            Err(SendError::Refused { code, reason }) => {
                let reason = if code == 132000 {
                    parameter_count_reason(&request, &reason)
                } else {
                    reason
                };
                self.delivery.failed(&room, &notice, &reason).await?;
                Ok(format!("⚠ Template {name} not sent to +{wa_id}: {reason}"))
            }
            Err(SendError::Transient(reason)) => {
                let reason = format!("{reason}; try again later");
                self.delivery.failed(&room, &notice, &reason).await?;
                Ok(format!("⚠ Template {name} not sent to +{wa_id}: {reason}"))
            }
        }
    }

    async fn opt_outs(self) -> Result<String, Error> {
        let opted_out = self.opt_outs.list()?;
        if opted_out.is_empty() {
            return Ok("No contact has opted out.".to_owned());
        }
        let mut text = format!(
            "{} opted out (they wrote STOP; nothing is sent to them until they write START):",
            opted_out.len()
        );
        for (wa_id, since_ms) in opted_out {
            let name = match self.store.ghost_user(&wa_id)? {
                Some(ghost) => self
                    .store
                    .ghost_profile(&ghost)?
                    .and_then(|p| p.displayname)
                    .filter(|name| !name.starts_with('+'))
                    .map(|name| format!(" {name}"))
                    .unwrap_or_default(),
                None => String::new(),
            };
            text.push_str(&format!("\n• +{wa_id}{name}, since {}", utc(since_ms)));
        }
        Ok(text)
    }

    /// The portal of `wa_id` (created if needed), with `sender` invited to it.
    async fn open_portal(&self, wa_id: &str, sender: &UserId) -> Result<OwnedRoomId, Error> {
        let ghost = self.portals.ghost(wa_id, None).await?;
        let room = self.portals.portal(wa_id, None, &ghost).await?;
        let client = &self.portals.client;
        client.invite(client.bot(), &room, sender).await?;
        Ok(room)
    }
}

/// A parsed `template` command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TemplateRequest {
    name: String,
    phone: Option<String>,
    language: Option<String>,
    parameters: Vec<String>,
}

impl TemplateRequest {
    fn usage() -> String {
        "Usage: template <name> <phone> [lang=<code>] [parameters…], e.g. template \
         appointment_reminder +447700900123 \"Tuesday\" \"10:00\"; in a portal the phone may be \
         left out."
            .to_owned()
    }

    /// `<name> [<phone>] [lang=<code>] [parameters…]`. In a portal the phone is optional, and
    /// only an argument starting with `+` is taken for one; elsewhere the first argument after
    /// the name is the phone.
    fn parse(args: &[String], in_portal: bool) -> Result<TemplateRequest, String> {
        let Some((name, rest)) = args.split_first() else {
            return Err(TemplateRequest::usage());
        };
        let mut request = TemplateRequest {
            name: name.clone(),
            phone: None,
            language: None,
            parameters: Vec::new(),
        };
        for arg in rest {
            if let Some(code) = arg.strip_prefix("lang=") {
                request.language = Some(code.to_owned());
            } else if request.phone.is_none()
                && request.parameters.is_empty()
                && (!in_portal || arg.starts_with('+'))
            {
                request.phone = Some(arg.clone());
            } else {
                request.parameters.push(arg.clone());
            }
        }
        if request.phone.is_none() && !in_portal {
            return Err(TemplateRequest::usage());
        }
        Ok(request)
    }
}

/// The Cloud API template message: the parameters fill the body's placeholders in order.
pub(super) fn template_message(
    to: &str,
    name: &str,
    language: &str,
    parameters: &[String],
) -> Value {
    let mut template = json!({"name": name, "language": {"code": language}});
    if !parameters.is_empty() {
        let parameters: Vec<Value> = parameters
            .iter()
            .map(|text| json!({"type": "text", "text": text}))
            .collect();
        template["components"] = json!([{"type": "body", "parameters": parameters}]);
    }
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template,
    })
}

/// The portal's record of a template sent.
fn template_notice(request: &TemplateRequest, language: &str, sender: &UserId) -> String {
    let parameters = if request.parameters.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = request
            .parameters
            .iter()
            .map(|p| format!("“{p}”"))
            .collect();
        format!(" with {}", quoted.join(", "))
    };
    format!(
        "📨 Template {} ({language}){parameters}, sent for {sender}.",
        request.name
    )
}

/// What the room is told when WhatsApp refused the number of parameters (132000).
fn parameter_count_reason(request: &TemplateRequest, details: &str) -> String {
    format!(
        "template {} takes a different number of parameters than the {} given — one for each \
         {{{{1}}}}, {{{{2}}}}… of its body ({details})",
        request.name,
        request.parameters.len()
    )
}

/// The WhatsApp id of a phone number as people write it (`+44 7700 900123`, `(555) 000-2222`).
fn wa_id_of(phone: &str) -> Option<String> {
    let wa_id: String = phone
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
        .collect();
    (valid_wa_id(&wa_id) && wa_id.len() >= 7).then_some(wa_id)
}

/// `YYYY-MM-DD HH:MM UTC` for Unix milliseconds.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date, in 400-year eras of 146 097 days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        bridge_toolkit::commands::split_args(text)
    }

    #[test]
    fn template_arguments_name_phone_language_and_parameters() {
        /// The name, phone, language and parameters expected, or a refusal.
        type Expected = Option<(
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            &'static [&'static str],
        )>;
        let cases: &[(&str, bool, Expected)] = &[
            (
                "appointment_reminder +447700900123 \"Tuesday\" \"10:00\"",
                false,
                Some((
                    "appointment_reminder",
                    Some("+447700900123"),
                    None,
                    &["Tuesday", "10:00"],
                )),
            ),
            (
                "reminder 447700900123 lang=pt_BR \"terça, 10h\"",
                false,
                Some((
                    "reminder",
                    Some("447700900123"),
                    Some("pt_BR"),
                    &["terça, 10h"],
                )),
            ),
            ("hello_world", true, Some(("hello_world", None, None, &[]))),
            (
                "reminder Tuesday 10:00",
                true,
                Some(("reminder", None, None, &["Tuesday", "10:00"])),
            ),
            (
                "reminder +15550002222 Tuesday",
                true,
                Some(("reminder", Some("+15550002222"), None, &["Tuesday"])),
            ),
            // Only the first argument may be the phone.
            (
                "reminder Tuesday +15550002222",
                true,
                Some(("reminder", None, None, &["Tuesday", "+15550002222"])),
            ),
            ("hello_world", false, None),
            ("", true, None),
        ];
        for (text, in_portal, expected) in cases {
            let parsed = TemplateRequest::parse(&args(text), *in_portal).ok();
            let expected = expected.map(|(name, phone, language, parameters)| TemplateRequest {
                name: name.into(),
                phone: phone.map(str::to_owned),
                language: language.map(str::to_owned),
                parameters: parameters.iter().map(|p| p.to_string()).collect(),
            });
            assert_eq!(parsed, expected, "{text:?} in portal: {in_portal}");
        }
    }

    #[test]
    fn a_template_message_has_the_documented_shape() {
        assert_eq!(
            template_message("447700900123", "hello_world", "en_US", &[]),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "447700900123", "type": "template",
                   "template": {"name": "hello_world", "language": {"code": "en_US"}}})
        );
        let message = template_message(
            "447700900123",
            "appointment_reminder",
            "en_GB",
            &["Tuesday".into(), "10:00".into()],
        );
        assert_eq!(
            message["template"]["components"],
            json!([{"type": "body", "parameters": [
                {"type": "text", "text": "Tuesday"}, {"type": "text", "text": "10:00"}]}])
        );
    }

    #[test]
    fn phones_and_times_read_as_people_write_them() {
        assert_eq!(wa_id_of("+44 7700 900123").as_deref(), Some("447700900123"));
        assert_eq!(wa_id_of("(555) 000-2222").as_deref(), Some("5550002222"));
        assert_eq!(wa_id_of("12345"), None);
        assert_eq!(wa_id_of("+44 7700 CALL"), None);
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_827_696_000), "2000-02-29 12:34 UTC");
        assert_eq!(utc(1_795_273_200_000), "2026-11-21 15:00 UTC");
    }

    #[test]
    fn a_wrong_parameter_count_is_explained() {
        let request =
            TemplateRequest::parse(&args("reminder +447700900123 Tuesday"), false).expect("parses");
        let reason = parameter_count_reason(&request, "expected 2");
        assert!(
            reason.starts_with("template reminder takes a different number of parameters than the 1 given — one for each {{1}}, {{2}}… of its body"),
            "{reason}"
        );
    }
}
