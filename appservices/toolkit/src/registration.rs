//! A bridge's appservice registration: its id, where the homeserver reaches it (`url`), the two
//! secrets (`as_token` for the bridge's requests, `hs_token` for the homeserver's), its bot
//! (`sender_localpart`) and the namespaces it owns. [`Registration::generate`] makes one from a
//! ghost prefix with fresh random tokens; [`Registration::to_yaml`] writes the file the
//! homeserver reads (Plexus: listed in `appservice_registrations`; Synapse:
//! `app_service_config_files`), the fields as the Application Service API names them.
//!
//! The generated namespaces are exclusive and anchored at both ends, the way mautrix bridges write
//! them: users `^@<prefix>.*:<server>$` (the ghosts), aliases `^#<prefix>.*:<server>$`.
//! `rate_limited` is false (a bridge speaks for many people) and ephemeral events are asked for
//! under the stable and the older unstable name.

use std::path::Path;

use regex::Regex;
use ruma::{RoomAliasId, ServerName, UserId};
use serde::{Deserialize, Serialize};

use crate::Error;

/// One namespace entry: ids matching `regex` (from their start) belong to the bridge.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Namespace {
    pub exclusive: bool,
    pub regex: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Namespaces {
    #[serde(default)]
    pub users: Vec<Namespace>,
    #[serde(default)]
    pub aliases: Vec<Namespace>,
    #[serde(default)]
    pub rooms: Vec<Namespace>,
}

/// A registration, as written in its YAML file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registration {
    pub id: String,
    /// Where the homeserver sends transactions and queries; `None` for none.
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
    pub namespaces: Namespaces,
    #[serde(default)]
    pub rate_limited: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    #[serde(default)]
    pub receive_ephemeral: bool,
    /// The name of `receive_ephemeral` before it was stable (MSC2409); older homeservers read
    /// only this one.
    #[serde(
        rename = "de.sorunome.msc2409.push_ephemeral",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub push_ephemeral: Option<bool>,
}

impl Registration {
    /// A new registration for a bridge `id` reached at `url`, whose bot is `sender_localpart`
    /// and whose ghosts and aliases are named `<ghost_prefix>…` on `server_name`; tokens are
    /// fresh and random.
    pub fn generate(
        id: &str,
        url: &str,
        sender_localpart: &str,
        ghost_prefix: &str,
        server_name: &ServerName,
    ) -> Registration {
        let server = regex::escape(server_name.as_str());
        let prefix = regex::escape(ghost_prefix);
        Registration {
            id: id.to_owned(),
            url: Some(url.to_owned()),
            as_token: random_token(),
            hs_token: random_token(),
            sender_localpart: sender_localpart.to_owned(),
            namespaces: Namespaces {
                users: vec![
                    Namespace {
                        exclusive: true,
                        regex: format!("^@{}:{server}$", regex::escape(sender_localpart)),
                    },
                    Namespace {
                        exclusive: true,
                        regex: format!("^@{prefix}.*:{server}$"),
                    },
                ],
                aliases: vec![Namespace {
                    exclusive: true,
                    regex: format!("^#{prefix}.*:{server}$"),
                }],
                rooms: Vec::new(),
            },
            rate_limited: false,
            protocols: Vec::new(),
            receive_ephemeral: true,
            push_ephemeral: Some(true),
        }
    }

    /// The registration file's text.
    pub fn to_yaml(&self) -> String {
        // Serialising plain strings, bools and lists cannot fail.
        serde_norway::to_string(self).unwrap_or_default()
    }

    /// Reads a registration file's text.
    pub fn parse(text: &str) -> Result<Registration, Error> {
        serde_norway::from_str(text).map_err(|e| Error::Registration(e.to_string()))
    }

    /// Reads the registration file at `path`.
    pub fn load(path: &Path) -> Result<Registration, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Registration(format!("{}: {e}", path.display())))?;
        Registration::parse(&text)
            .map_err(|e| Error::Registration(format!("{}: {e}", path.display())))
    }

    /// Writes the registration file at `path`, readable by its owner only (it holds secrets).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.to_yaml())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    /// Whether `user` is the bot or falls in one of the registration's user namespaces: a user
    /// of the bridge's own, whose events must never be bridged back.
    pub fn is_bridge_user(&self, user: &UserId) -> bool {
        user.localpart() == self.sender_localpart
            || matches_any(&self.namespaces.users, user.as_str())
    }

    /// Whether `alias` falls in one of the registration's alias namespaces.
    pub fn is_bridge_alias(&self, alias: &RoomAliasId) -> bool {
        matches_any(&self.namespaces.aliases, alias.as_str())
    }
}

fn matches_any(namespaces: &[Namespace], id: &str) -> bool {
    namespaces.iter().any(|n| {
        Regex::new(&format!("^(?:{})", n.regex))
            .map(|r| r.is_match(id))
            .unwrap_or(false)
    })
}

/// A random token of 64 letters and digits (about 380 bits).
pub fn random_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..64)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{room_alias_id, server_name, user_id};

    fn generated() -> Registration {
        Registration::generate(
            "whatsapp",
            "http://127.0.0.1:29318",
            "whatsappbot",
            "whatsapp_",
            server_name!("care.example"),
        )
    }

    #[test]
    fn generates_the_fields_homeservers_read() {
        let yaml = generated().to_yaml();
        let value: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(value["id"].as_str(), Some("whatsapp"));
        assert_eq!(value["url"].as_str(), Some("http://127.0.0.1:29318"));
        assert_eq!(value["sender_localpart"].as_str(), Some("whatsappbot"));
        assert_eq!(value["rate_limited"].as_bool(), Some(false));
        assert_eq!(value["receive_ephemeral"].as_bool(), Some(true));
        assert_eq!(
            value["namespaces"]["users"][1]["regex"].as_str(),
            Some(r"^@whatsapp_.*:care\.example$")
        );
        assert_eq!(
            value["namespaces"]["users"][1]["exclusive"].as_bool(),
            Some(true)
        );
        assert_eq!(
            value["namespaces"]["aliases"][0]["regex"].as_str(),
            Some(r"^#whatsapp_.*:care\.example$")
        );
        assert_eq!(value["as_token"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn tokens_are_fresh_and_distinct() {
        let (a, b) = (generated(), generated());
        assert_ne!(a.as_token, b.as_token);
        assert_ne!(a.as_token, a.hs_token);
    }

    #[test]
    fn the_yaml_reads_back_unchanged() {
        let registration = generated();
        assert_eq!(
            Registration::parse(&registration.to_yaml()).unwrap(),
            registration
        );
    }

    #[test]
    fn a_file_is_written_for_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registration.yaml");
        let registration = generated();
        registration.write(&path).unwrap();
        assert_eq!(Registration::load(&path).unwrap(), registration);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn knows_its_own_users_and_aliases() {
        let registration = generated();
        assert!(registration.is_bridge_user(user_id!("@whatsappbot:care.example")));
        assert!(registration.is_bridge_user(user_id!("@whatsapp_4477:care.example")));
        assert!(!registration.is_bridge_user(user_id!("@staff:care.example")));
        assert!(!registration.is_bridge_user(user_id!("@whatsapp_4477:elsewhere.example")));
        assert!(registration.is_bridge_alias(room_alias_id!("#whatsapp_x:care.example")));
        assert!(!registration.is_bridge_alias(room_alias_id!("#lobby:care.example")));
    }
}
