//! Contact cards a WhatsApp contact shares (`type: contacts`), for Matrix readers: a readable card
//! per contact (name, organisation, phones, e-mails, addresses, links, birthday; phones, e-mails
//! and links clickable in the HTML), and the same contacts as a vCard 3.0 file, which a phone or
//! address book imports in one tap.
//!
//! A contact is `{name: {formatted_name, first_name, last_name, middle_name, prefix, suffix},
//! org: {company, department, title}, phones: [{phone, wa_id, type}], emails: [{email, type}],
//! addresses: [{street, city, state, zip, country, country_code, type}], urls: [{url, type}],
//! birthday}`, every part but the name optional.

use serde_json::Value;

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value[key].as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn list(value: &Value, key: &str) -> impl Iterator<Item = Value> {
    value[key]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
}

/// The name shown for a contact.
fn display_name(contact: &Value) -> String {
    let name = &contact["name"];
    if let Some(formatted) = text(name, "formatted_name") {
        return formatted.to_owned();
    }
    let parts: Vec<&str> = ["prefix", "first_name", "middle_name", "last_name", "suffix"]
        .iter()
        .filter_map(|key| text(name, key))
        .collect();
    if parts.is_empty() {
        "Unnamed contact".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `(label, kind)` → `label (kind)`, the kind in lower case (`CELL` → `cell`).
fn labelled(label: &str, kind: Option<&str>) -> String {
    match kind {
        Some(kind) => format!("{label} ({})", kind.to_ascii_lowercase()),
        None => label.to_owned(),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn address_line(address: &Value) -> Option<String> {
    let parts: Vec<&str> = ["street", "city", "state", "zip", "country"]
        .iter()
        .filter_map(|key| text(address, key))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// One line of a card: its plain text and its HTML.
struct Line {
    plain: String,
    html: String,
}

fn lines(contact: &Value) -> Vec<Line> {
    let mut lines = Vec::new();
    let plain_line = |plain: String| Line {
        html: html_escape(&plain),
        plain,
    };
    let org = &contact["org"];
    let org_parts: Vec<&str> = ["company", "department", "title"]
        .iter()
        .filter_map(|key| text(org, key))
        .collect();
    if !org_parts.is_empty() {
        lines.push(plain_line(format!("🏢 {}", org_parts.join(", "))));
    }
    for phone in list(contact, "phones") {
        let Some(number) = text(&phone, "phone") else {
            continue;
        };
        let mut notes: Vec<String> = text(&phone, "type")
            .map(str::to_ascii_lowercase)
            .into_iter()
            .collect();
        if text(&phone, "wa_id").is_some() {
            notes.push("on WhatsApp".to_owned());
        }
        let label = match notes.is_empty() {
            true => number.to_owned(),
            false => format!("{number} ({})", notes.join(", ")),
        };
        let dial: String = number
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        lines.push(Line {
            html: format!(
                "📞 <a href=\"tel:{}\">{}</a>{}",
                html_escape(&dial),
                html_escape(number),
                html_escape(&label[number.len()..])
            ),
            plain: format!("📞 {label}"),
        });
    }
    for email in list(contact, "emails") {
        let Some(address) = text(&email, "email") else {
            continue;
        };
        let label = labelled(address, text(&email, "type"));
        lines.push(Line {
            html: format!(
                "✉️ <a href=\"mailto:{0}\">{0}</a>{1}",
                html_escape(address),
                html_escape(&label[address.len()..])
            ),
            plain: format!("✉️ {label}"),
        });
    }
    for address in list(contact, "addresses") {
        if let Some(line) = address_line(&address) {
            lines.push(plain_line(format!(
                "🏠 {}",
                labelled(&line, text(&address, "type"))
            )));
        }
    }
    for url in list(contact, "urls") {
        let Some(link) = text(&url, "url") else {
            continue;
        };
        let label = labelled(link, text(&url, "type"));
        let html = if link.starts_with("https://") || link.starts_with("http://") {
            format!(
                "🔗 <a href=\"{0}\">{0}</a>{1}",
                html_escape(link),
                html_escape(&label[link.len()..])
            )
        } else {
            format!("🔗 {}", html_escape(&label))
        };
        lines.push(Line {
            plain: format!("🔗 {label}"),
            html,
        });
    }
    if let Some(birthday) = text(contact, "birthday") {
        lines.push(plain_line(format!("🎂 {birthday}")));
    }
    lines
}

/// The readable cards of a `contacts` array: `(body, formatted_body)`, `None` when empty.
pub fn card(contacts: &Value) -> Option<(String, String)> {
    let contacts = contacts.as_array().filter(|c| !c.is_empty())?;
    let mut plain = Vec::new();
    let mut html = Vec::new();
    for contact in contacts {
        let name = display_name(contact);
        let lines = lines(contact);
        let mut card_plain = vec![format!("👤 {name}")];
        card_plain.extend(lines.iter().map(|l| l.plain.clone()));
        plain.push(card_plain.join("\n"));
        let mut card_html = vec![format!("👤 <strong>{}</strong>", html_escape(&name))];
        card_html.extend(lines.into_iter().map(|l| l.html));
        html.push(format!("<p>{}</p>", card_html.join("<br>")));
    }
    Some((plain.join("\n\n"), html.join("")))
}

/// A vCard value with `\`, `,`, `;` and line breaks escaped (RFC 6350 §3.4).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A `TYPE=` parameter value: letters, digits and dashes only.
fn type_param(kind: Option<&str>) -> String {
    kind.map(|k| {
        k.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
    })
    .filter(|k| !k.is_empty())
    .map(|k| format!(";TYPE={}", k.to_ascii_uppercase()))
    .unwrap_or_default()
}

fn vcard(contact: &Value) -> String {
    let name = &contact["name"];
    let field = |key: &str| escape(text(name, key).unwrap_or_default());
    let mut lines = vec![
        "BEGIN:VCARD".to_owned(),
        "VERSION:3.0".to_owned(),
        format!(
            "N:{};{};{};{};{}",
            field("last_name"),
            field("first_name"),
            field("middle_name"),
            field("prefix"),
            field("suffix")
        ),
        format!("FN:{}", escape(&display_name(contact))),
    ];
    let org = &contact["org"];
    if text(org, "company").is_some() || text(org, "department").is_some() {
        lines.push(format!(
            "ORG:{};{}",
            escape(text(org, "company").unwrap_or_default()),
            escape(text(org, "department").unwrap_or_default())
        ));
    }
    if let Some(title) = text(org, "title") {
        lines.push(format!("TITLE:{}", escape(title)));
    }
    for phone in list(contact, "phones") {
        if let Some(number) = text(&phone, "phone") {
            lines.push(format!(
                "TEL{}:{}",
                type_param(text(&phone, "type")),
                escape(number)
            ));
        }
    }
    for email in list(contact, "emails") {
        if let Some(address) = text(&email, "email") {
            lines.push(format!(
                "EMAIL{}:{}",
                type_param(text(&email, "type")),
                escape(address)
            ));
        }
    }
    for address in list(contact, "addresses") {
        if address_line(&address).is_none() {
            continue;
        }
        let part = |key: &str| escape(text(&address, key).unwrap_or_default());
        lines.push(format!(
            "ADR{}:;;{};{};{};{};{}",
            type_param(text(&address, "type")),
            part("street"),
            part("city"),
            part("state"),
            part("zip"),
            part("country")
        ));
    }
    for url in list(contact, "urls") {
        if let Some(link) = text(&url, "url") {
            lines.push(format!(
                "URL{}:{}",
                type_param(text(&url, "type")),
                escape(link)
            ));
        }
    }
    if let Some(birthday) = text(contact, "birthday") {
        lines.push(format!("BDAY:{}", escape(birthday)));
    }
    lines.push("END:VCARD".to_owned());
    lines.join("\r\n") + "\r\n"
}

/// The vCard file of a `contacts` array: `(file name, text)`, `None` when empty. One contact
/// gives `<name>.vcf`, several `contacts.vcf`.
pub fn vcard_file(contacts: &Value) -> Option<(String, String)> {
    let contacts = contacts.as_array().filter(|c| !c.is_empty())?;
    let text: String = contacts.iter().map(vcard).collect();
    let filename = match contacts.as_slice() {
        [one] => {
            let name: String = display_name(one)
                .chars()
                .map(|c| if "/\\:*?\"<>|".contains(c) { '_' } else { c })
                .collect();
            format!("{name}.vcf")
        }
        _ => "contacts.vcf".to_owned(),
    };
    Some((filename, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ada() -> Value {
        json!({
            "name": {"formatted_name": "Ada Lovelace", "first_name": "Ada", "last_name": "Lovelace"},
            "org": {"company": "Analytical Engines, Ltd", "title": "Engineer"},
            "phones": [{"phone": "+44 7700 900456", "wa_id": "447700900456", "type": "CELL"},
                       {"phone": "+44 20 7946 0000", "type": "WORK"}],
            "emails": [{"email": "ada@example.org", "type": "WORK"}],
            "addresses": [{"street": "1 Main St", "city": "London", "country": "UK", "type": "HOME"}],
            "urls": [{"url": "https://example.org/ada", "type": "WORK"}],
            "birthday": "1815-12-10",
        })
    }

    #[test]
    fn a_card_lists_what_the_contact_shared() {
        let (body, html) = card(&json!([ada()])).unwrap();
        assert_eq!(
            body,
            "👤 Ada Lovelace\n🏢 Analytical Engines, Ltd, Engineer\n\
             📞 +44 7700 900456 (cell, on WhatsApp)\n📞 +44 20 7946 0000 (work)\n\
             ✉️ ada@example.org (work)\n🏠 1 Main St, London, UK (home)\n\
             🔗 https://example.org/ada (work)\n🎂 1815-12-10"
        );
        assert!(
            html.contains("<a href=\"tel:+447700900456\">+44 7700 900456</a> (cell, on WhatsApp)")
        );
        assert!(html.contains("<a href=\"mailto:ada@example.org\">ada@example.org</a> (work)"));
        assert!(html.starts_with("<p>👤 <strong>Ada Lovelace</strong><br>"));
        assert_eq!(card(&json!([])), None);
    }

    #[test]
    fn several_contacts_get_a_card_each() {
        let bob = json!({"name": {"first_name": "Bob", "last_name": "<Smith>"}});
        let (body, html) = card(&json!([ada(), bob])).unwrap();
        assert!(body.ends_with("\n\n👤 Bob <Smith>"), "{body}");
        assert!(html.contains("<strong>Bob &lt;Smith&gt;</strong>"));
    }

    #[test]
    fn the_vcard_escapes_and_types_its_values() {
        let (filename, text) = vcard_file(&json!([ada()])).unwrap();
        assert_eq!(filename, "Ada Lovelace.vcf");
        assert_eq!(
            text,
            "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Lovelace;Ada;;;\r\nFN:Ada Lovelace\r\n\
             ORG:Analytical Engines\\, Ltd;\r\nTITLE:Engineer\r\n\
             TEL;TYPE=CELL:+44 7700 900456\r\nTEL;TYPE=WORK:+44 20 7946 0000\r\n\
             EMAIL;TYPE=WORK:ada@example.org\r\nADR;TYPE=HOME:;;1 Main St;London;;;UK\r\n\
             URL;TYPE=WORK:https://example.org/ada\r\nBDAY:1815-12-10\r\nEND:VCARD\r\n"
        );
        let (filename, _) = vcard_file(&json!([ada(), ada()])).unwrap();
        assert_eq!(filename, "contacts.vcf");
    }
}
