//! The bridge's configuration: a TOML file of its own (the Cloud API account, the homeserver,
//! where to listen, the store, the staff to invite). Secrets live here and in the registration
//! file only; they are never logged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ruma::{OwnedServerName, OwnedUserId};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub whatsapp: WhatsApp,
    pub homeserver: Homeserver,
    pub bridge: BridgeSection,
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
    /// Matrix users invited to every new portal; only they are bridged out.
    #[serde(default)]
    pub staff: Vec<OwnedUserId>,
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
    }
}
