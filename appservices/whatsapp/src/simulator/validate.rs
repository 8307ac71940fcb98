//! Shape checks for `POST /{phone-number-id}/messages` bodies: what the Cloud API requires of
//! each message type, and the error it answers when a request falls short. Pure functions over
//! JSON; checks that need the simulator's state (media ids, context ids, the window) are made by
//! the caller on the result.

use serde_json::{Map, Value};

use super::error::GraphError;

const TYPES: &[&str] = &[
    "audio",
    "contacts",
    "document",
    "image",
    "interactive",
    "location",
    "reaction",
    "sticker",
    "template",
    "text",
    "video",
];
const INTERACTIVE_TYPES: &[&str] = &[
    "button",
    "list",
    "cta_url",
    "flow",
    "location_request_message",
    "product",
    "product_list",
];

/// A send request that passed the shape checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Send {
    /// `status: read` (optionally with a typing indicator) for an inbound message.
    Read {
        message_id: String,
    },
    Message(Outbound),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// `to` as given, and the digits-only WhatsApp id it designates (the group id for a group).
    pub input: String,
    pub wa_id: String,
    /// `recipient_type: "group"`.
    pub group: bool,
    pub kind: String,
    /// The uploaded media the message refers to by id.
    pub media_id: Option<String>,
    /// `context.message_id` of a reply.
    pub context: Option<String>,
    /// `reaction.message_id`.
    pub reaction_to: Option<String>,
    /// `template.name` and `template.language.code`.
    pub template: Option<(String, String)>,
}

fn invalid(details: impl Into<String>) -> GraphError {
    GraphError::new(131009, details)
}

fn missing(details: impl Into<String>) -> GraphError {
    GraphError::new(131008, details)
}

fn required(name: &str) -> GraphError {
    GraphError::param(format!("The parameter {name} is required."))
}

fn string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<&'a str, GraphError> {
    match object.get(key) {
        None | Some(Value::Null) => Err(required(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(format!("Parameter '{name}' must be a string"))),
    }
}

fn optional_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<&'a str>, GraphError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("Parameter '{name}' must be a string"))),
    }
}

fn object<'a>(value: &'a Value, name: &str) -> Result<&'a Map<String, Value>, GraphError> {
    value
        .as_object()
        .ok_or_else(|| invalid(format!("Parameter '{name}' must be an object")))
}

fn max_chars(text: &str, max: usize, name: &str) -> Result<(), GraphError> {
    if text.chars().count() > max {
        return Err(invalid(format!(
            "Parameter '{name}' must be at most {max} characters long"
        )));
    }
    Ok(())
}

/// The WhatsApp id `to` designates: its digits, once `+`, spaces, dashes and brackets are gone.
pub fn wa_id(to: &str) -> Option<String> {
    let digits: String = to
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
        .collect();
    (digits.len() >= 7 && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// Checks a send request body.
pub fn send(body: &Value) -> Result<Send, GraphError> {
    let Some(body) = body.as_object() else {
        return Err(GraphError::param("Invalid parameter"));
    };
    let product = string(body, "messaging_product", "messaging_product")?;
    if product != "whatsapp" {
        return Err(GraphError::param(format!(
            "Param messaging_product must be one of {{WHATSAPP}} - got \"{product}\"."
        )));
    }
    if let Some(status) = body.get("status") {
        if status != "read" {
            return Err(invalid("Parameter 'status' must be 'read'"));
        }
        let message_id = string(body, "message_id", "message_id")?;
        if let Some(typing) = body.get("typing_indicator") {
            let typing = object(typing, "typing_indicator")?;
            if string(typing, "type", "typing_indicator['type']")? != "text" {
                return Err(invalid("Parameter 'typing_indicator.type' must be 'text'"));
            }
        }
        return Ok(Send::Read {
            message_id: message_id.to_owned(),
        });
    }
    let group = match optional_string(body, "recipient_type", "recipient_type")? {
        None | Some("individual") => false,
        Some("group") => true,
        Some(other) => {
            return Err(GraphError::param(format!(
                "Param recipient_type must be one of {{INDIVIDUAL, GROUP}} - got \"{other}\"."
            )));
        }
    };
    let input = string(body, "to", "to")?;
    // To a group, `to` is the group id from the Groups API; whether it exists is the caller's.
    let wa_id = if group {
        input.to_owned()
    } else {
        wa_id(input).ok_or_else(|| invalid("Invalid 'to' parameter: not a phone number"))?
    };
    let kind = optional_string(body, "type", "type")?.unwrap_or("text");
    if !TYPES.contains(&kind) {
        return Err(GraphError::param(format!(
            "Param type must be one of {{{}}} - got \"{kind}\".",
            TYPES.join(", ").to_uppercase()
        )));
    }
    let payload = body
        .get(kind)
        .filter(|v| !v.is_null())
        .ok_or_else(|| missing(format!("Parameter '{kind}' is required for type '{kind}'")))?;
    let mut outbound = Outbound {
        input: input.to_owned(),
        wa_id,
        group,
        kind: kind.to_owned(),
        media_id: None,
        context: None,
        reaction_to: None,
        template: None,
    };
    if let Some(context) = body.get("context") {
        let context = object(context, "context")?;
        outbound.context = Some(string(context, "message_id", "context['message_id']")?.to_owned());
    }
    match kind {
        "text" => text(object(payload, "text")?)?,
        "location" => location(object(payload, "location")?)?,
        "contacts" => contacts(payload)?,
        "interactive" => interactive(object(payload, "interactive")?)?,
        "reaction" => {
            let reaction = object(payload, "reaction")?;
            outbound.reaction_to =
                Some(string(reaction, "message_id", "reaction['message_id']")?.to_owned());
            // An empty emoji removes the reaction, so only its presence is required.
            let emoji = string(reaction, "emoji", "reaction['emoji']")?;
            if emoji.chars().count() > 10 {
                return Err(invalid("Parameter 'reaction.emoji' must be a single emoji"));
            }
        }
        "template" => {
            let template = object(payload, "template")?;
            let name = string(template, "name", "template['name']")?;
            let language = template
                .get("language")
                .ok_or_else(|| required("template['language']"))?;
            let code = string(
                object(language, "template.language")?,
                "code",
                "template['language']['code']",
            )?;
            if let Some(components) = template.get("components")
                && !components.is_array()
            {
                return Err(invalid("Parameter 'template.components' must be an array"));
            }
            outbound.template = Some((name.to_owned(), code.to_owned()));
        }
        media => outbound.media_id = self::media(media, object(payload, media)?)?,
    }
    // An arbitrary string of at most 512 characters, echoed in the message's status webhooks.
    if let Some(data) = body.get("biz_opaque_callback_data") {
        match data.as_str() {
            Some(data) if data.chars().count() <= 512 => {}
            _ => {
                return Err(invalid(
                    "Parameter 'biz_opaque_callback_data' must be a string of at most 512 characters",
                ));
            }
        }
    }
    Ok(Send::Message(outbound))
}

/// How many distinct `{{n}}` placeholders a template text has.
pub fn placeholders(text: &str) -> usize {
    let mut numbers = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find("}}")
            && let Ok(n) = rest[..end].trim().parse::<u32>()
        {
            numbers.insert(n);
        }
    }
    numbers.len()
}

/// How many parameters a template message gives its body component.
pub fn template_body_parameters(message: &Value) -> usize {
    message["template"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("body"))
        })
        .filter_map(|c| c["parameters"].as_array())
        .map(Vec::len)
        .sum()
}

fn text(text: &Map<String, Value>) -> Result<(), GraphError> {
    let body = string(text, "body", "text['body']")?;
    if body.is_empty() {
        return Err(invalid("Parameter 'text.body' must not be empty"));
    }
    max_chars(body, 4096, "text.body")?;
    if let Some(preview) = text.get("preview_url")
        && !preview.is_boolean()
    {
        return Err(invalid("Parameter 'text.preview_url' must be a boolean"));
    }
    Ok(())
}

/// Media by exactly one of `id` (an upload) or `link` (an http(s) URL); captions only where the
/// type has them, a file name only on documents. Returns the media id when given by id.
fn media(kind: &str, media: &Map<String, Value>) -> Result<Option<String>, GraphError> {
    let id = optional_string(media, "id", &format!("{kind}['id']"))?;
    let link = optional_string(media, "link", &format!("{kind}['link']"))?;
    let id = match (id, link) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "Parameter '{kind}' must have either 'id' or 'link', not both"
            )));
        }
        (None, None) => {
            return Err(missing(format!(
                "Parameter '{kind}' requires 'id' or 'link'"
            )));
        }
        (Some(id), None) => Some(id.to_owned()),
        (None, Some(link)) => {
            if !(link.starts_with("https://") || link.starts_with("http://")) {
                return Err(invalid(format!(
                    "Parameter '{kind}.link' must be an http(s) URL"
                )));
            }
            None
        }
    };
    if let Some(caption) = optional_string(media, "caption", &format!("{kind}['caption']"))? {
        if matches!(kind, "audio" | "sticker") {
            return Err(invalid(format!(
                "Parameter 'caption' is not allowed for type '{kind}'"
            )));
        }
        max_chars(caption, 1024, &format!("{kind}.caption"))?;
    }
    if media.contains_key("filename") && kind != "document" {
        return Err(invalid(format!(
            "Parameter 'filename' is not allowed for type '{kind}'"
        )));
    }
    optional_string(media, "filename", "document['filename']")?;
    Ok(id)
}

fn location(location: &Map<String, Value>) -> Result<(), GraphError> {
    for (key, limit) in [("latitude", 90.0), ("longitude", 180.0)] {
        let value = location
            .get(key)
            .ok_or_else(|| required(&format!("location['{key}']")))?;
        // Meta accepts the coordinates as numbers or as numeric strings.
        let number = value
            .as_f64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| invalid(format!("Parameter 'location.{key}' must be a number")))?;
        if !(-limit..=limit).contains(&number) {
            return Err(invalid(format!(
                "Parameter 'location.{key}' is out of range"
            )));
        }
    }
    optional_string(location, "name", "location['name']")?;
    optional_string(location, "address", "location['address']")?;
    Ok(())
}

fn contacts(contacts: &Value) -> Result<(), GraphError> {
    let list = contacts
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("Parameter 'contacts' must be a non-empty array"))?;
    for contact in list {
        let contact = object(contact, "contacts[]")?;
        let name = contact
            .get("name")
            .ok_or_else(|| required("contacts['name']"))?;
        string(
            object(name, "contacts.name")?,
            "formatted_name",
            "contacts['name']['formatted_name']",
        )?;
    }
    Ok(())
}

fn interactive(interactive: &Map<String, Value>) -> Result<(), GraphError> {
    let kind = string(interactive, "type", "interactive['type']")?;
    if !INTERACTIVE_TYPES.contains(&kind) {
        return Err(invalid(format!(
            "Parameter 'interactive.type' has an unknown value '{kind}'"
        )));
    }
    let action = interactive
        .get("action")
        .ok_or_else(|| required("interactive['action']"))?;
    let action = object(action, "interactive.action")?;
    if matches!(kind, "button" | "list") {
        let body = interactive
            .get("body")
            .ok_or_else(|| required("interactive['body']"))?;
        let text = string(
            object(body, "interactive.body")?,
            "text",
            "interactive['body']['text']",
        )?;
        max_chars(text, 1024, "interactive.body.text")?;
    }
    match kind {
        "button" => {
            let buttons = action
                .get("buttons")
                .and_then(Value::as_array)
                .ok_or_else(|| required("interactive['action']['buttons']"))?;
            if buttons.is_empty() || buttons.len() > 3 {
                return Err(invalid(
                    "Parameter 'interactive.action.buttons' must have 1 to 3 buttons",
                ));
            }
            for button in buttons {
                let button = object(button, "buttons[]")?;
                if string(button, "type", "buttons['type']")? != "reply" {
                    return Err(invalid("Parameter 'buttons.type' must be 'reply'"));
                }
                let reply = button
                    .get("reply")
                    .ok_or_else(|| required("buttons['reply']"))?;
                let reply = object(reply, "buttons.reply")?;
                string(reply, "id", "buttons['reply']['id']")?;
                max_chars(
                    string(reply, "title", "buttons['reply']['title']")?,
                    20,
                    "buttons.reply.title",
                )?;
            }
        }
        "list" => {
            string(action, "button", "interactive['action']['button']")?;
            let sections = action
                .get("sections")
                .and_then(Value::as_array)
                .filter(|s| !s.is_empty() && s.len() <= 10)
                .ok_or_else(|| {
                    invalid("Parameter 'interactive.action.sections' must have 1 to 10 sections")
                })?;
            let mut rows = 0;
            for section in sections {
                let section = object(section, "sections[]")?;
                let list = section
                    .get("rows")
                    .and_then(Value::as_array)
                    .ok_or_else(|| required("sections['rows']"))?;
                for row in list {
                    let row = object(row, "rows[]")?;
                    string(row, "id", "rows['id']")?;
                    max_chars(string(row, "title", "rows['title']")?, 24, "rows.title")?;
                    rows += 1;
                }
            }
            if rows == 0 || rows > 10 {
                return Err(invalid("A list message must have 1 to 10 rows in all"));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn code(body: Value) -> u32 {
        send(&body).expect_err("refused").code
    }

    #[test]
    fn callback_data_is_a_short_string() {
        let text = |data: Value| {
            json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "text",
                   "text": {"body": "hi"}, "biz_opaque_callback_data": data})
        };
        assert!(send(&text(json!("$event:hs"))).is_ok());
        assert!(send(&text(json!("x".repeat(512)))).is_ok());
        assert_eq!(code(text(json!("x".repeat(513)))), 131009);
        assert_eq!(code(text(json!(7))), 131009);
    }

    #[test]
    fn documented_shapes_pass() {
        let base = |extra: Value| {
            let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+1 650-555-1234"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        for extra in [
            json!({"type": "text", "text": {"preview_url": false, "body": "hi"}}),
            json!({"text": {"body": "hi"}, "context": {"message_id": "wamid.X"}}),
            json!({"type": "image", "image": {"id": "123", "caption": "c"}}),
            json!({"type": "document", "document": {"link": "https://x/y.pdf", "filename": "y.pdf"}}),
            json!({"type": "audio", "audio": {"id": "1"}}),
            json!({"type": "sticker", "sticker": {"id": "1"}}),
            json!({"type": "location", "location": {"latitude": 1.5, "longitude": "-2.25", "name": "n"}}),
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ada"}}]}),
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": ""}}),
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}),
            json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
        ] {
            let parsed = send(&base(extra.clone()));
            assert!(parsed.is_ok(), "{extra}: {parsed:?}");
        }
        let Ok(Send::Message(out)) = send(&base(json!({"text": {"body": "hi"}}))) else {
            panic!()
        };
        assert_eq!(out.wa_id, "16505551234");
        assert_eq!(out.input, "+1 650-555-1234");
        assert_eq!(
            send(
                &json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A", "typing_indicator": {"type": "text"}})
            ),
            Ok(Send::Read {
                message_id: "wamid.A".into()
            })
        );
    }

    #[test]
    fn malformed_shapes_get_the_documented_codes() {
        assert_eq!(
            code(json!({"to": "16505551234", "text": {"body": "x"}})),
            100
        );
        assert_eq!(
            code(json!({"messaging_product": "sms", "to": "16505551234"})),
            100
        );
        assert_eq!(
            code(json!({"messaging_product": "whatsapp", "text": {"body": "x"}})),
            100
        );
        assert_eq!(
            code(json!({"messaging_product": "whatsapp", "to": "1", "text": {"body": "x"}})),
            131009
        );
        assert_eq!(
            code(json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "fax"})),
            100
        );
        assert_eq!(
            code(json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "image"})),
            131008
        );
        assert_eq!(
            code(
                json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "image", "image": {}})
            ),
            131008
        );
        assert_eq!(
            code(
                json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "image", "image": {"id": "1", "link": "https://a"}})
            ),
            131009
        );
        assert_eq!(
            code(
                json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "audio", "audio": {"id": "1", "caption": "no"}})
            ),
            131009
        );
        assert_eq!(
            code(json!({"messaging_product": "whatsapp", "to": "16505551234", "text": {}})),
            100
        );
        assert_eq!(
            code(
                json!({"messaging_product": "whatsapp", "to": "16505551234", "text": {"body": "x".repeat(4097)}})
            ),
            131009
        );
        assert_eq!(
            code(
                json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "interactive", "interactive": {"type": "button", "body": {"text": "?"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "a", "title": "A"}}, {"type": "reply", "reply": {"id": "b", "title": "B"}},
            {"type": "reply", "reply": {"id": "c", "title": "C"}}, {"type": "reply", "reply": {"id": "d", "title": "D"}}]}}})
            ),
            131009
        );
        assert_eq!(
            code(json!({"messaging_product": "whatsapp", "status": "read"})),
            100
        );
        assert_eq!(
            code(
                json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "template", "template": {"name": "x"}})
            ),
            100
        );
    }

    #[test]
    fn template_placeholders_and_body_parameters_are_counted() {
        assert_eq!(placeholders("Hello"), 0);
        assert_eq!(placeholders("On {{1}} at {{2}}; see you {{1}}"), 2);
        assert_eq!(placeholders("{{ 1 }} and {{x}} and {{"), 1);
        let message = json!({"template": {"name": "t", "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "h"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ]}});
        assert_eq!(template_body_parameters(&message), 2);
        assert_eq!(
            template_body_parameters(&json!({"template": {"name": "t"}})),
            0
        );
    }
}
