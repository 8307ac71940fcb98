//! The bridge's configuration: a TOML file of its own (the Cloud API account, the homeserver,
//! where to listen, the store, the staff and who is invited into portals). Secrets live here and
//! in the registration file only; they are never logged.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ruma::{OwnedRoomOrAliasId, OwnedServerName, OwnedUserId};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub whatsapp: WhatsApp,
    pub homeserver: Homeserver,
    pub bridge: BridgeSection,
    /// Retries and in-doubt sends (optional; see `retry`).
    #[serde(default)]
    pub delivery: super::retry::DeliveryConfig,
}

/// The WhatsApp Business Cloud API account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsApp {
    /// The Graph API base without the version, e.g. `https://graph.facebook.com`.
    #[serde(default = "default_api_base")]
    pub api_base_url: String,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub phone_number_id: String,
    pub access_token: String,
    /// The key of the webhooks' `X-Hub-Signature-256`.
    pub app_secret: String,
    /// What Meta presents in the verification handshake.
    pub verify_token: String,
}

/// The Matrix side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Homeserver {
    /// Where the Client-Server API is reached, e.g. `http://127.0.0.1:8008`.
    pub url: String,
    pub server_name: OwnedServerName,
}

/// The bridge itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// The appservice registration file (written by `generate-registration`).
    pub registration: PathBuf,
    /// Where the homeserver pushes transactions.
    #[serde(default = "default_appservice_listen")]
    pub appservice_listen: SocketAddr,
    /// Where Meta posts webhooks (`/webhook`).
    #[serde(default = "default_webhook_listen")]
    pub webhook_listen: SocketAddr,
    /// The toolkit store (SQLite).
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Who may use the bridge: run the bot's commands, and have their messages in portals sent
    /// to WhatsApp. Each entry is a user id, or a room (`!id:server` or `#alias:server`) all of
    /// whose joined members count — a care team's room, which the bot must be in.
    #[serde(default)]
    pub staff: Vec<Member>,
    /// Who is invited into each new portal, in the same form; the staff when not given. People
    /// invited who are not staff may read along, but their messages are not sent to WhatsApp.
    #[serde(default)]
    pub invite: Option<Vec<Member>>,
    /// The template language `template` uses when the command names none.
    #[serde(default = "default_template_language")]
    pub template_language: String,
    /// The approved template sent instead of a staff message that WhatsApp refuses because the
    /// contact's 24-hour window is closed (error 131047). Without it the room is told why the
    /// message was not delivered.
    #[serde(default)]
    pub window_template: Option<WindowTemplate>,
}

/// `[bridge.window_template]`: what goes out when the 24-hour window is closed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowTemplate {
    /// The approved template's name.
    pub name: String,
    /// Its language; `template_language` when not given.
    #[serde(default)]
    pub language: Option<String>,
    /// Whether the staff message's text fills the template's one body placeholder (`{{1}}`);
    /// otherwise the template is sent without parameters, as an invitation to write back.
    #[serde(default)]
    pub include_text: bool,
}

/// One entry of the staff and invite rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum Member {
    /// One Matrix user.
    User(OwnedUserId),
    /// Everyone joined to a room, read when needed.
    Room(OwnedRoomOrAliasId),
}

impl TryFrom<String> for Member {
    type Error = String;

    fn try_from(entry: String) -> Result<Member, String> {
        if entry.starts_with('@') {
            OwnedUserId::try_from(entry.as_str())
                .map(Member::User)
                .map_err(|e| format!("{entry}: not a user id ({e})"))
        } else if entry.starts_with('!') || entry.starts_with('#') {
            OwnedRoomOrAliasId::try_from(entry.as_str())
                .map(Member::Room)
                .map_err(|e| format!("{entry}: not a room id or alias ({e})"))
        } else {
            Err(format!(
                "{entry}: expected a user id (@user:server), a room id (!room:server) or a room \
                 alias (#room:server)"
            ))
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::User(user) => user.fmt(f),
            Member::Room(room) => write!(f, "the members of {room}"),
        }
    }
}

impl BridgeSection {
    /// Who is invited into each new portal: `invite`, else the staff.
    pub fn invite_rules(&self) -> &[Member] {
        self.invite.as_deref().unwrap_or(&self.staff)
    }
}

fn default_api_base() -> String {
    "https://graph.facebook.com".into()
}
fn default_api_version() -> String {
    "v21.0".into()
}
fn default_appservice_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 29318))
}
fn default_webhook_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 29319))
}
fn default_database() -> PathBuf {
    "whatsapp-bridge.db".into()
}
fn default_template_language() -> String {
    "en_US".into()
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if !config.whatsapp.api_version.starts_with('v') {
            return Err("whatsapp.api_version must look like v21.0".into());
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `{base}/{version}`, the prefix of every Graph request.
    pub fn graph_url(&self) -> String {
        format!(
            "{}/{}",
            self.whatsapp.api_base_url.trim_end_matches('/'),
            self.whatsapp.api_version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_parses_with_defaults() {
        let config = Config::parse(
            r#"
[whatsapp]
phone_number_id = "106540352242922"
access_token = "EAAtoken"
app_secret = "s3cret"
verify_token = "verify-me"
[homeserver]
url = "http://127.0.0.1:8008"
server_name = "localhost"
[bridge]
registration = "whatsapp.yaml"
staff = ["@alice:localhost"]
"#,
        )
        .expect("parses");
        assert_eq!(config.graph_url(), "https://graph.facebook.com/v21.0");
        assert_eq!(config.bridge.staff.len(), 1);
        assert_eq!(config.bridge.webhook_listen.port(), 29319);
        assert_eq!(config.bridge.template_language, "en_US");
        // Without `invite`, the staff are invited (the rule before `invite` existed).
        assert_eq!(config.bridge.invite_rules(), config.bridge.staff.as_slice());
    }

    fn bridge_section(lines: &str) -> Result<BridgeSection, String> {
        let text = format!(
            "[whatsapp]\nphone_number_id = \"1\"\naccess_token = \"t\"\napp_secret = \"s\"\n\
             verify_token = \"v\"\n[homeserver]\nurl = \"http://hs\"\nserver_name = \"hs\"\n\
             [bridge]\nregistration = \"r.yaml\"\n{lines}"
        );
        Config::parse(&text).map(|c| c.bridge)
    }

    #[test]
    fn staff_and_invite_rules_take_users_and_rooms() {
        let bridge = bridge_section(
            r##"
staff = ["@alice:hs", "#care-team:hs"]
invite = ["@carol:hs", "!team:hs", "#care-team:hs"]
template_language = "pt_BR"
[bridge.window_template]
name = "care_team_message"
include_text = true
"##,
        )
        .expect("parses");
        assert_eq!(
            bridge.staff,
            vec![
                Member::User(ruma::owned_user_id!("@alice:hs")),
                Member::Room("#care-team:hs".try_into().unwrap()),
            ]
        );
        let invite = bridge.invite_rules();
        assert_eq!(invite.len(), 3);
        assert_eq!(invite[0], Member::User(ruma::owned_user_id!("@carol:hs")));
        assert_eq!(invite[1], Member::Room("!team:hs".try_into().unwrap()));
        assert_eq!(invite[1].to_string(), "the members of !team:hs");
        assert_eq!(bridge.template_language, "pt_BR");
        let window = bridge.window_template.as_ref().expect("a window template");
        assert_eq!(
            (
                window.name.as_str(),
                window.language.as_deref(),
                window.include_text
            ),
            ("care_team_message", None, true)
        );
        // An empty `invite` invites nobody (the staff open portals themselves with `start`).
        assert!(
            bridge_section("staff = [\"@alice:hs\"]\ninvite = []")
                .unwrap()
                .invite_rules()
                .is_empty()
        );
    }

    #[test]
    fn malformed_rules_are_refused_with_the_entry() {
        for (lines, expected) in [
            ("staff = [\"alice\"]", "alice: expected a user id"),
            ("staff = [\"@alice\"]", "@alice: not a user id"),
            (
                "invite = [\"#no-server\"]",
                "#no-server: not a room id or alias",
            ),
            ("staff = \"@alice:hs\"", "invalid type"),
            ("invited = []", "unknown field"),
        ] {
            let error = bridge_section(lines).expect_err(lines);
            assert!(error.contains(expected), "{lines}: {error}");
        }
    }
}
