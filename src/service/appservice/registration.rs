//! One appservice registration file (YAML), as the Application Service API describes it: `id`,
//! `url` (required, may be null: no transactions, no queries), `as_token`, `hs_token`,
//! `sender_localpart`, `namespaces` (`users`, `aliases`, `rooms`: lists of `{regex, exclusive}`),
//! `rate_limited` (default true, as Synapse), `protocols`, `receive_ephemeral` (or its unstable
//! name `de.sorunome.msc2409.push_ephemeral`), and the device-masquerading flag
//! `org.matrix.msc3202`.
//!
//! Namespace regexes match from the start of the id and need not reach its end (what Synapse
//! does with Python's `re.match`, and what bridges' generated registrations expect: they anchor
//! both ends themselves). A user namespace only ever covers users of this server.

use std::path::{Path, PathBuf};

use regex::Regex;
use ruma::{OwnedUserId, ServerName, UserId};
use serde::Deserialize;

/// Why a registration file was refused; the message names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("appservice registration {file}: {message}")]
pub struct RegistrationError {
    pub file: PathBuf,
    pub message: String,
}

/// A checked registration.
#[derive(Debug)]
pub struct Registration {
    /// The file it was read from.
    pub file: PathBuf,
    pub id: String,
    /// Where transactions and queries go; `None` when the registration says `url: null`.
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    /// The appservice's own user (`@<sender_localpart>:<server name>`).
    pub sender: OwnedUserId,
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
    pub rate_limited: bool,
    pub protocols: Vec<String>,
    pub receive_ephemeral: bool,
    /// `org.matrix.msc3202`: may act as a given device of its users (`device_id`).
    pub device_masquerading: bool,
}

/// One namespace entry.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub exclusive: bool,
    /// The regex as written in the file.
    pub pattern: String,
    regex: Regex,
}

impl Namespace {
    /// Whether `id` falls in the namespace (the regex matches from its start).
    pub fn matches(&self, id: &str) -> bool {
        self.regex.is_match(id)
    }
}

/// The file's fields as written, before checking.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistration {
    id: String,
    url: Option<String>,
    as_token: String,
    hs_token: String,
    sender_localpart: String,
    #[serde(default)]
    namespaces: RawNamespaces,
    rate_limited: Option<bool>,
    #[serde(default)]
    protocols: Vec<String>,
    receive_ephemeral: Option<bool>,
    #[serde(rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: Option<bool>,
    #[serde(rename = "org.matrix.msc3202")]
    msc3202: Option<bool>,
    #[serde(rename = "io.element.msc4190")]
    msc4190: Option<bool>,
    /// Synapse's extra; accepted and ignored, so its registrations load unchanged.
    #[serde(rename = "ip_range_whitelist")]
    _ip_range_whitelist: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNamespaces {
    #[serde(default)]
    users: Vec<RawNamespace>,
    #[serde(default)]
    aliases: Vec<RawNamespace>,
    #[serde(default)]
    rooms: Vec<RawNamespace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    exclusive: bool,
    regex: String,
}

impl Registration {
    /// Reads and checks the registration in `file`.
    pub fn load(file: &Path, server_name: &ServerName) -> Result<Registration, RegistrationError> {
        let text = std::fs::read_to_string(file).map_err(|e| RegistrationError {
            file: file.to_owned(),
            message: format!("cannot read the file: {e}"),
        })?;
        Registration::parse(file, &text, server_name)
    }

    /// Checks the registration `text` (from `file`, named in errors).
    pub fn parse(
        file: &Path,
        text: &str,
        server_name: &ServerName,
    ) -> Result<Registration, RegistrationError> {
        let error = |message: String| RegistrationError {
            file: file.to_owned(),
            message,
        };
        // A missing `url` key is an error; `url: null` is allowed (no pushes or queries).
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| error(format!("not valid YAML: {e}")))?;
        if value.get("url").is_none() {
            return Err(error(
                "missing field `url` (write `url: null` for an appservice that receives nothing)"
                    .into(),
            ));
        }
        let raw: RawRegistration =
            serde_norway::from_str(text).map_err(|e| error(e.to_string()))?;
        for (field, value) in [
            ("id", &raw.id),
            ("as_token", &raw.as_token),
            ("hs_token", &raw.hs_token),
            ("sender_localpart", &raw.sender_localpart),
        ] {
            if value.trim().is_empty() {
                return Err(error(format!("field `{field}` must not be empty")));
            }
        }
        if raw.as_token == raw.hs_token {
            return Err(error("fields `as_token` and `hs_token` must differ".into()));
        }
        if let Some(url) = &raw.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(error(format!(
                "field `url` must be an http(s) URL or null, not {url:?}"
            )));
        }
        if let Some(bad) = crate::service::accounts::invalid_localpart_char(&raw.sender_localpart) {
            return Err(error(format!(
                "field `sender_localpart`: {bad:?} may not be in a user id (a-z, 0-9 and ._=-/+)"
            )));
        }
        let sender = UserId::parse_with_server_name(raw.sender_localpart.as_str(), server_name)
            .map_err(|e| {
                error(format!(
                    "field `sender_localpart`: {:?} is not a valid localpart: {e}",
                    raw.sender_localpart
                ))
            })?;
        let namespaces = |kind: &str, entries: Vec<RawNamespace>| {
            entries
                .into_iter()
                .enumerate()
                .map(|(i, entry)| {
                    let regex = Regex::new(&format!("^(?:{})", entry.regex))
                        .map_err(|e| error(format!("field `namespaces.{kind}[{i}].regex`: {e}")))?;
                    Ok(Namespace {
                        exclusive: entry.exclusive,
                        pattern: entry.regex,
                        regex,
                    })
                })
                .collect::<Result<Vec<_>, RegistrationError>>()
        };
        Ok(Registration {
            file: file.to_owned(),
            users: namespaces("users", raw.namespaces.users)?,
            aliases: namespaces("aliases", raw.namespaces.aliases)?,
            rooms: namespaces("rooms", raw.namespaces.rooms)?,
            id: raw.id,
            url: raw.url,
            as_token: raw.as_token,
            hs_token: raw.hs_token,
            sender,
            rate_limited: raw.rate_limited.unwrap_or(true),
            protocols: raw.protocols,
            receive_ephemeral: raw
                .receive_ephemeral
                .or(raw.push_ephemeral)
                .unwrap_or(false),
            device_masquerading: raw.msc3202.or(raw.msc4190).unwrap_or(false),
        })
    }

    /// Whether `user` is the appservice's own user or falls in its user namespace. Users of
    /// other servers never do.
    pub fn is_in_user_namespace(&self, user: &UserId) -> bool {
        user == self.sender
            || (user.server_name() == self.sender.server_name()
                && self.users.iter().any(|n| n.matches(user.as_str())))
    }

    /// Whether `user` is the appservice's own user or falls in an exclusive user namespace.
    pub fn claims_user_exclusively(&self, user: &UserId) -> bool {
        user == self.sender
            || (user.server_name() == self.sender.server_name()
                && self
                    .users
                    .iter()
                    .any(|n| n.exclusive && n.matches(user.as_str())))
    }

    /// Refuses `self` next to an already loaded `other`: the same id or `as_token`, the same
    /// exclusive namespace, or one's bot in the other's exclusive user namespace.
    pub fn check_compatible_with(&self, other: &Registration) -> Result<(), RegistrationError> {
        let error = |message: String| RegistrationError {
            file: self.file.clone(),
            message,
        };
        if self.id == other.id {
            return Err(error(format!(
                "field `id`: {:?} is already the id of {}",
                self.id,
                other.file.display()
            )));
        }
        if self.as_token == other.as_token {
            return Err(error(format!(
                "field `as_token` is already the as_token of {}",
                other.file.display()
            )));
        }
        for (kind, mine, theirs) in [
            ("users", &self.users, &other.users),
            ("aliases", &self.aliases, &other.aliases),
            ("rooms", &self.rooms, &other.rooms),
        ] {
            for (i, namespace) in mine.iter().enumerate() {
                let clash = theirs.iter().any(|t| {
                    t.pattern == namespace.pattern && (t.exclusive || namespace.exclusive)
                });
                if clash {
                    return Err(error(format!(
                        "field `namespaces.{kind}[{i}]`: {:?} is also claimed by {}, and one of \
                         them claims it exclusively",
                        namespace.pattern,
                        other.file.display()
                    )));
                }
            }
        }
        if other.claims_user_exclusively(&self.sender)
            || self.claims_user_exclusively(&other.sender)
        {
            return Err(error(format!(
                "field `sender_localpart`: {} and the appservice of {} claim each other's users",
                self.sender,
                other.file.display()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> &'static ServerName {
        ruma::server_name!("care.example")
    }

    fn parse(text: &str) -> Result<Registration, RegistrationError> {
        Registration::parse(Path::new("whatsapp.yaml"), text, server())
    }

    const WHATSAPP: &str = r#"
id: whatsapp
url: http://127.0.0.1:29318
as_token: as-secret
hs_token: hs-secret
sender_localpart: whatsappbot
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: '@whatsapp_.*:care\.example'
  aliases:
    - exclusive: true
      regex: '#whatsapp_.*:care\.example'
  rooms: []
de.sorunome.msc2409.push_ephemeral: true
org.matrix.msc3202: true
"#;

    #[test]
    fn a_mautrix_style_registration_is_read() {
        let r = parse(WHATSAPP).unwrap();
        assert_eq!(r.id, "whatsapp");
        assert_eq!(r.url.as_deref(), Some("http://127.0.0.1:29318"));
        assert_eq!(r.sender.as_str(), "@whatsappbot:care.example");
        assert!(!r.rate_limited && r.receive_ephemeral && r.device_masquerading);
        let ghost = UserId::parse("@whatsapp_4477:care.example").unwrap();
        let staff = UserId::parse("@nurse:care.example").unwrap();
        let remote = UserId::parse("@whatsapp_1:other.example").unwrap();
        assert!(r.claims_user_exclusively(&ghost) && r.claims_user_exclusively(&r.sender));
        assert!(!r.is_in_user_namespace(&staff) && !r.is_in_user_namespace(&remote));
    }

    #[test]
    fn url_null_is_allowed_and_a_missing_url_is_not() {
        let text = WHATSAPP.replace("url: http://127.0.0.1:29318", "url: null");
        assert_eq!(parse(&text).unwrap().url, None);
        let text = WHATSAPP.replace("url: http://127.0.0.1:29318\n", "");
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains("whatsapp.yaml") && error.contains("`url`"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        for (broken, field) in [
            (WHATSAPP.replace("hs_token: hs-secret\n", ""), "hs_token"),
            (
                WHATSAPP.replace("'@whatsapp_.*:care\\.example'", "'@whatsapp_(.*'"),
                "namespaces.users[0].regex",
            ),
            (
                WHATSAPP.replace(
                    "sender_localpart: whatsappbot",
                    "sender_localpart: 'Bad Bot'",
                ),
                "sender_localpart",
            ),
            (
                WHATSAPP.replace("url: http://127.0.0.1:29318", "url: ftp://x"),
                "url",
            ),
            (
                WHATSAPP.replace("rate_limited: false", "rate_limited: maybe"),
                "rate_limited",
            ),
        ] {
            let error = parse(&broken).unwrap_err().to_string();
            assert!(
                error.starts_with("appservice registration whatsapp.yaml"),
                "{error}"
            );
            assert!(error.contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn two_registrations_cannot_share_an_exclusive_namespace_an_id_or_a_token() {
        let first = parse(WHATSAPP).unwrap();
        let renamed = |text: &str| {
            text.replace("id: whatsapp", "id: other")
                .replace("as_token: as-secret", "as_token: other-as")
                .replace("hs_token: hs-secret", "hs_token: other-hs")
                .replace(
                    "sender_localpart: whatsappbot",
                    "sender_localpart: otherbot",
                )
        };
        let same_namespace = parse(&renamed(WHATSAPP)).unwrap();
        assert!(same_namespace.check_compatible_with(&first).is_err());
        let distinct = renamed(WHATSAPP)
            .replace("@whatsapp_", "@discord_")
            .replace("#whatsapp_", "#discord_");
        assert!(
            parse(&distinct)
                .unwrap()
                .check_compatible_with(&first)
                .is_ok()
        );
        let same_id = parse(&distinct.replace("id: other", "id: whatsapp")).unwrap();
        assert!(
            same_id
                .check_compatible_with(&first)
                .unwrap_err()
                .to_string()
                .contains("`id`")
        );
    }
}
