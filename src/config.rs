//! The server's configuration: one serde struct per TOML section, each with a default for every
//! option so that `plexus serve` runs with no file at all. `conf/plexus.example.toml` is the
//! documented source of every option; a test checks that it parses and names every field.
//!
//! Values come from, in increasing precedence: the defaults, the TOML file, environment variables
//! named `PLEXUS__SECTION__KEY` (how secrets reach the server without being written in a file),
//! and the command-line overrides of `plexus serve`. An unknown key or a bad value stops start-up
//! with a message naming it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ruma::OwnedServerName;
use serde::{Deserialize, Serialize};

/// The prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PLEXUS__";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name: the part after the colon in user ids and room aliases.
    pub server_name: OwnedServerName,
    /// Addresses to listen on for client traffic, as "ADDR:PORT" (federation has its own
    /// listeners in `[federation]`).
    pub listen: Vec<SocketAddr>,
    /// Where the database, the signing key and media are kept.
    pub data_dir: PathBuf,
    /// The URL clients reach this server at, served in `/.well-known/matrix/client`. Derived from
    /// the server name and first listener when unset.
    pub public_baseurl: Option<String>,
    pub log: LogConfig,
    pub registration: RegistrationConfig,
    pub rooms: RoomsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub rate_limits: RateLimitsConfig,
    pub database: DatabaseConfig,
    pub metrics: MetricsConfig,
    pub well_known: WellKnownConfig,
    pub federation: FederationConfig,
    pub media: MediaConfig,
    /// Appservice registration files (YAML), one per bridge or bot; read at start-up.
    pub appservice_registrations: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: a level ("info") or directives ("info,plexus::storage=debug").
    /// `RUST_LOG`, when set, takes precedence.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Anyone may register with `m.login.dummy`. Registration tokens work either way.
    pub open: bool,
    /// Enables `/_synapse/admin/v1/register` for tools that hold this secret.
    pub shared_secret: Option<String>,
    /// Passwords shorter than this are refused with `M_WEAK_PASSWORD`.
    pub password_min_length: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// The room version of new rooms when the client names none: "10", "11" or "12".
    pub default_room_version: ruma::RoomVersionId,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of access tokens issued together with a refresh token. Tokens issued without one
    /// never expire.
    pub access_token_lifetime_secs: u64,
    /// How long an unfinished user-interactive authentication session is kept.
    pub uiaa_session_lifetime_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted on the client API; larger ones get `M_TOO_LARGE`.
    pub max_request_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub enabled: bool,
    /// Login attempts per client address.
    pub login: Bucket,
    /// Failed login attempts per account.
    pub failed_login: Bucket,
    /// Registration attempts per client address.
    pub registration: Bucket,
    /// Events sent per user.
    pub message: Bucket,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `full` syncs every commit to disk (survives power loss); `normal` survives a crash of the
    /// process but may lose the last commits on power loss.
    pub synchronous: Synchronous,
    /// Read-only connections in the pool.
    pub read_connections: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `/metrics` on the listeners.
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WellKnownConfig {
    /// "host:port" served as `m.server` in `/.well-known/matrix/server` (federation delegation).
    /// Unset: that endpoint answers 404 and other servers fall back to the server name itself.
    pub server: Option<String>,
}

/// The Server-Server API: TLS listeners, certificates, which servers may talk to this one, and
/// fixed addresses that bypass server discovery.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// TLS listeners for federation traffic, as "ADDR:PORT". Empty: federation is off.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain served on the federation listeners. Unset (together with
    /// `tls_private_key`): a self-signed pair for the server name is generated under `data_dir`.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
    /// Check other servers' TLS certificates. Only turn off for tests and private networks.
    pub verify_certificates: bool,
    /// Extra CA certificates (PEM) trusted for other servers, besides the public web roots.
    pub trusted_ca: Option<PathBuf>,
    /// Server names allowed to federate; `*` matches any run of characters.
    pub allow: Vec<String>,
    /// Server names refused even when allowed; `*` matches any run of characters.
    pub deny: Vec<String>,
    /// Fixed "ADDR:PORT" per server name, used instead of server discovery.
    pub resolve: BTreeMap<OwnedServerName, SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost".try_into().expect("a valid server name"),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8008))],
            data_dir: PathBuf::from("./plexus-data"),
            public_baseurl: None,
            log: LogConfig::default(),
            registration: RegistrationConfig::default(),
            rooms: RoomsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            database: DatabaseConfig::default(),
            metrics: MetricsConfig::default(),
            well_known: WellKnownConfig::default(),
            federation: FederationConfig::default(),
            media: MediaConfig::default(),
            appservice_registrations: Vec::new(),
        }
    }
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            listen: Vec::new(),
            tls_certificate: None,
            tls_private_key: None,
            verify_certificates: true,
            trusted_ca: None,
            allow: vec!["*".into()],
            deny: Vec::new(),
            resolve: BTreeMap::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            open: false,
            shared_secret: None,
            password_min_length: 8,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            default_room_version: ruma::RoomVersionId::V10,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_lifetime_secs: 300,
            uiaa_session_lifetime_secs: 3600,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: 1024 * 1024,
        }
    }
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            enabled: true,
            login: Bucket {
                per_second: 0.5,
                burst: 10,
            },
            failed_login: Bucket {
                per_second: 0.05,
                burst: 5,
            },
            registration: Bucket {
                per_second: 0.17,
                burst: 3,
            },
            message: Bucket {
                per_second: 10.0,
                burst: 50,
            },
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            synchronous: Synchronous::Full,
            read_connections: 4,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

/// A configuration that could not be loaded; the message names the file, key and problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads the configuration: defaults, then `file` (if any), then `PLEXUS__…` variables from
    /// `env`. Validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // Start from the defaults so that a section given in part (one field of a rate limit
        // bucket, say) keeps the defaults of the rest.
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError(format!("cannot represent the defaults: {e}")))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            let from_file = text.parse::<toml::Table>().map_err(|e| {
                ConfigError(format!(
                    "config file {} is not valid TOML: {e}",
                    path.display()
                ))
            })?;
            merge(&mut table, from_file);
        }
        apply_env_overrides(&mut table, env)?;
        let source = file.map_or("configuration".to_string(), |p| p.display().to_string());
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                let at = if path == "." {
                    String::new()
                } else {
                    format!(" at `{path}`")
                };
                ConfigError(format!("{source}{at}: {}", e.inner().message().trim()))
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError(
                "listen: at least one \"ADDR:PORT\" is needed".into(),
            ));
        }
        if self.limits.max_request_bytes < 1024 {
            return Err(ConfigError(
                "limits.max_request_bytes: must be at least 1024".into(),
            ));
        }
        if self.database.read_connections == 0 {
            return Err(ConfigError(
                "database.read_connections: must be at least 1".into(),
            ));
        }
        let buckets = [
            ("login", &self.rate_limits.login),
            ("failed_login", &self.rate_limits.failed_login),
            ("registration", &self.rate_limits.registration),
            ("message", &self.rate_limits.message),
        ];
        for (name, bucket) in buckets {
            if !(bucket.per_second.is_finite() && bucket.per_second > 0.0) || bucket.burst == 0 {
                return Err(ConfigError(format!(
                    "rate_limits.{name}: per_second must be a positive number and burst at least 1"
                )));
            }
        }
        if let Some(url) = &self.public_baseurl
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "public_baseurl: {url:?} must start with http:// or https://"
            )));
        }
        if !["10", "11", "12"].contains(&self.rooms.default_room_version.as_str()) {
            return Err(ConfigError(format!(
                "rooms.default_room_version: {} is not supported; use \"10\", \"11\" or \"12\"",
                self.rooms.default_room_version
            )));
        }
        if self.registration.shared_secret.as_deref() == Some("") {
            return Err(ConfigError(
                "registration.shared_secret: must not be empty".into(),
            ));
        }
        self.federation.validate()?;
        self.media.validate()?;
        Ok(())
    }

    /// The base URL clients use, as served in `/.well-known/matrix/client`.
    pub fn client_base_url(&self) -> String {
        if let Some(url) = &self.public_baseurl {
            return url.trim_end_matches('/').to_string();
        }
        let host = self.server_name.host();
        let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok();
        match (local, self.server_name.port(), self.listen.first()) {
            (true, None, Some(addr)) => format!("http://{host}:{}", addr.port()),
            (true, _, _) => format!("http://{}", self.server_name),
            (false, _, _) => format!("https://{}", self.server_name),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("plexus.db")
    }
}

impl FederationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_certificate.is_some() != self.tls_private_key.is_some() {
            return Err(ConfigError(
                "federation: set both tls_certificate and tls_private_key, or neither".into(),
            ));
        }
        for (name, patterns) in [("allow", &self.allow), ("deny", &self.deny)] {
            if let Some(bad) = patterns.iter().find(|p| p.trim().is_empty()) {
                return Err(ConfigError(format!(
                    "federation.{name}: {bad:?} is not a server name pattern"
                )));
            }
        }
        Ok(())
    }
}

/// The media repository: uploads, downloads, thumbnails, remote media and URL previews.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The largest file accepted (uploads and remote media), in bytes; larger uploads get 413
    /// `M_TOO_LARGE`, larger remote files 502 `M_TOO_LARGE`.
    pub max_upload_size: u64,
    /// Serve the legacy unauthenticated `/_matrix/media/v3/download`, `/thumbnail`, `/config` and
    /// `/preview_url`. Off (the specification's freeze): they answer 404 `M_NOT_FOUND` and clients
    /// use the authenticated `/_matrix/client/v1/media/...` endpoints. On: they serve every
    /// medium, old or new, to anyone who knows its id.
    pub legacy_unauthenticated: bool,
    /// How many ids from `POST /_matrix/media/v1/create` a user may hold unused at once; more get
    /// 429 `M_LIMIT_EXCEEDED`.
    pub max_pending_uploads: u32,
    /// How long an id from `/create` may wait for its upload before it is forgotten, in seconds.
    pub pending_upload_lifetime_secs: u64,
    /// The largest image (width × height, in pixels) the thumbnailer decodes; larger images get
    /// no thumbnail. With the decoder's allocation limit this keeps decompression bombs harmless.
    pub max_image_pixels: u64,
    /// Enable `GET /_matrix/client/v1/media/preview_url` (the server fetches pages for clients).
    pub url_preview: bool,
    /// Address ranges (CIDR, "10.1.0.0/16", "::1/128") URL previews, and the addresses other
    /// servers redirect media downloads to, may reach even though they are private, loopback or
    /// link-local, which are otherwise refused.
    pub url_preview_allow: Vec<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_upload_size: 100 * 1024 * 1024,
            legacy_unauthenticated: false,
            max_pending_uploads: 10,
            pending_upload_lifetime_secs: 24 * 60 * 60,
            max_image_pixels: 32_000_000,
            url_preview: false,
            url_preview_allow: Vec::new(),
        }
    }
}

impl MediaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_pending_uploads == 0 {
            return Err(ConfigError(
                "media.max_pending_uploads: must be at least 1".into(),
            ));
        }
        if self.max_image_pixels == 0 {
            return Err(ConfigError(
                "media.max_image_pixels: must be at least 1".into(),
            ));
        }
        for range in &self.url_preview_allow {
            if parse_cidr(range).is_none() {
                return Err(ConfigError(format!(
                    "media.url_preview_allow: {range:?} is not an address range like \"10.0.0.0/8\""
                )));
            }
        }
        Ok(())
    }
}

/// An address range "ADDR/BITS" (a plain address means just that address).
pub fn parse_cidr(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let addr: std::net::IpAddr = addr.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits.trim().parse::<u8>().ok().filter(|b| *b <= max)?,
        None => max,
    };
    Some((addr, bits))
}

/// Merges `overlay` into `base`: tables merge key by key, any other value replaces.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Applies `PLEXUS__SECTION__KEY=value` variables to the parsed table. A value is read as TOML
/// when it parses as a TOML value (numbers, booleans, arrays), and as a plain string otherwise.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError(format!(
                "environment variable {name}: empty key segment"
            )));
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let (last, parents) = keys.split_last().expect("split yields at least one key");
        let mut cursor = &mut *table;
        for key in parents {
            let entry = cursor
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = entry.as_table_mut().ok_or_else(|| {
                ConfigError(format!(
                    "environment variable {name}: {key} is not a section"
                ))
            })?;
        }
        cursor.insert(last.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../conf/plexus.example.toml");

    fn load_text(text: &str, env: Vec<(&str, &str)>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plexus.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(
            Some(&path),
            env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
    }

    fn as_toml(config: &Config) -> String {
        toml::to_string(config).unwrap()
    }

    #[test]
    fn no_file_gives_the_embedded_defaults() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.server_name.as_str(), "localhost");
        assert_eq!(
            config.listen,
            vec![SocketAddr::from(([127, 0, 0, 1], 8008))]
        );
        assert_eq!(config.data_dir, PathBuf::from("./plexus-data"));
        assert!(!config.registration.open);
        assert_eq!(config.client_base_url(), "http://localhost:8008");
    }

    #[test]
    fn the_example_parses_to_the_defaults() {
        let example = load_text(EXAMPLE, Vec::new()).unwrap();
        assert_eq!(as_toml(&example), as_toml(&Config::default()));
    }

    #[test]
    fn the_example_documents_every_option() {
        let mut full = Config {
            public_baseurl: Some("https://example.org".into()),
            ..Config::default()
        };
        full.registration.shared_secret = Some("s".into());
        full.well_known.server = Some("example.org:443".into());
        full.federation.tls_certificate = Some("cert.pem".into());
        full.federation.tls_private_key = Some("key.pem".into());
        full.federation.trusted_ca = Some("ca.pem".into());
        let table: toml::Table = as_toml(&full).parse().unwrap();
        let mut missing = Vec::new();
        for (key, value) in &table {
            let mut keys = vec![key.clone()];
            if let toml::Value::Table(section) = value {
                assert!(
                    EXAMPLE.contains(&format!("[{key}]")),
                    "section [{key}] is not in the example"
                );
                keys = section.keys().cloned().collect();
            }
            for key in keys {
                let active = EXAMPLE.lines().any(|l| l.starts_with(&format!("{key} =")));
                let commented = EXAMPLE
                    .lines()
                    .any(|l| l.starts_with(&format!("# {key} =")));
                if !active && !commented {
                    missing.push(key);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "options missing from conf/plexus.example.toml: {missing:?}"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = load_text("[registration]\nopen = true\nopne = false\n", Vec::new()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("registration") && message.contains("opne"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_value_is_named() {
        let err = load_text("listen = [\"not an address\"]\n", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        let err = load_text("server_name = \"bad name!\"\n", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("server_name"), "{err}");
        let err = load_text(
            "[rate_limits]\nlogin = { per_second = 0.0, burst = 1 }\n",
            Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("rate_limits.login"), "{err}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        let config = load_text(
            "[registration]\nopen = false\n",
            vec![
                ("PLEXUS__REGISTRATION__SHARED_SECRET", "from-env"),
                ("PLEXUS__REGISTRATION__OPEN", "true"),
                ("PLEXUS__RATE_LIMITS__LOGIN__BURST", "7"),
                ("UNRELATED", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.registration.shared_secret.as_deref(),
            Some("from-env")
        );
        assert!(config.registration.open);
        assert_eq!(config.rate_limits.login.burst, 7);
        let err = load_text("", vec![("PLEXUS__NO_SUCH_KEY", "1")]).unwrap_err();
        assert!(err.to_string().contains("no_such_key"), "{err}");
    }

    #[test]
    fn the_media_section_checks_its_address_ranges() {
        let config = load_text(
            "[media]\nurl_preview = true\nurl_preview_allow = [\"127.0.0.1/32\", \"::1\"]\n",
            Vec::new(),
        )
        .unwrap();
        assert!(config.media.url_preview);
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some(("10.0.0.0".parse().unwrap(), 8))
        );
        assert_eq!(parse_cidr("::1"), Some(("::1".parse().unwrap(), 128)));
        for bad in ["10.0.0.0/33", "nowhere/8", "::1/129", ""] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
        let err = load_text("[media]\nurl_preview_allow = [\"10/8\"]\n", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("media.url_preview_allow"), "{err}");
        assert!(Config::default().media.max_upload_size >= 100 * 1024 * 1024);
    }

    #[test]
    fn the_federation_section_loads_from_file_and_environment() {
        let config = load_text(
            "[federation]\nlisten = [\"127.0.0.1:8448\"]\ndeny = [\"*.evil.example\"]\n\
             [federation.resolve]\n\"hs2.test\" = \"127.0.0.1:9448\"\n",
            vec![("PLEXUS__FEDERATION__VERIFY_CERTIFICATES", "false")],
        )
        .unwrap();
        assert_eq!(
            config.federation.listen,
            vec![SocketAddr::from(([127, 0, 0, 1], 8448))]
        );
        assert!(!config.federation.verify_certificates);
        assert_eq!(config.federation.allow, vec!["*"]);
        assert_eq!(config.federation.deny, vec!["*.evil.example"]);
        let hs2: OwnedServerName = "hs2.test".try_into().unwrap();
        assert_eq!(
            config.federation.resolve.get(&hs2),
            Some(&SocketAddr::from(([127, 0, 0, 1], 9448)))
        );
        assert!(Config::default().federation.listen.is_empty());

        let err = load_text(
            "[federation.resolve]\n\"hs2.test\" = \"nowhere\"\n",
            Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("federation.resolve"), "{err}");
        let err = load_text("[federation]\ntls_certificate = \"c.pem\"\n", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("tls_private_key"), "{err}");
    }
}
