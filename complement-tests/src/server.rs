//! A `plexus serve` process under test: its temporary data directory and config file, its
//! lifecycle (start, SIGTERM, SIGKILL, restart on the same data), and entry points for clients.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;

use crate::client::{Client, Endpoint, http_client};
use crate::config::{Config, Toml};
use crate::federation::FederationTarget;
use crate::process::{Process, StartError, Tail};
use crate::user::User;

/// The shared secret for `/_synapse/admin/v1/register` in the harness default config.
pub const DEFAULT_SHARED_SECRET: &str = "complement-shared-secret";
const DEFAULT_SERVER_NAME: &str = "localhost";
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Changes to the harness default config before a server starts.
pub struct ServerBuilder {
    config: Config,
    raw_config: Option<String>,
    args: Vec<OsString>,
    /// Set for servers of a `Federation`: told the federation address at every start.
    federation_target: Option<FederationTarget>,
}

impl ServerBuilder {
    pub fn server_name(mut self, name: &str) -> Self {
        self.config.set("server_name", name);
        self
    }

    /// Sets a config key; dotted keys address tables (`"registration.open"`, `"limits.max_request_bytes"`).
    pub fn config(mut self, key: &str, value: impl Into<Toml>) -> Self {
        self.config.set(key, value);
        self
    }

    /// Leaves a key of the harness default out of the config file.
    pub fn without_config(mut self, key: &str) -> Self {
        self.config.remove(key);
        self
    }

    /// Turns rate limiting on and sets one bucket (`login`, `failed_login`, `registration`,
    /// `message`).
    pub fn rate_limit(self, bucket: &str, per_second: f64, burst: u32) -> Self {
        let limit = Toml::table([("per_second", per_second.into()), ("burst", burst.into())]);
        self.config("rate_limits.enabled", true)
            .config(&format!("rate_limits.{bucket}"), limit)
    }

    /// Uses `text` as the whole config file instead of the harness config. The harness then
    /// still passes `--listen 127.0.0.1:0 --data-dir <tempdir>` on the command line.
    pub fn raw_config(mut self, text: &str) -> Self {
        self.raw_config = Some(text.to_owned());
        self
    }

    /// An extra argument after `plexus serve --config <file>`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Reports the federation listener's address to `target` at every start (see `Federation`).
    pub(crate) fn forward_federation(mut self, target: FederationTarget) -> Self {
        self.federation_target = Some(target);
        self
    }

    /// Starts the server, panicking with its output if it does not come up.
    pub async fn start(self) -> Server {
        self.try_start()
            .await
            .unwrap_or_else(|e| panic!("plexus did not start: {e}"))
    }

    /// Starts the server, returning why it did not come up (for tests of bad configs).
    pub async fn try_start(self) -> Result<Server, StartError> {
        let data_dir = tempfile::Builder::new()
            .prefix("plexus-test-")
            .tempdir()
            .expect("creating a temporary data directory");
        let config_path = data_dir.path().join("plexus.toml");
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--config".into(),
            config_path.clone().into(),
        ];
        let text = match &self.raw_config {
            Some(text) => {
                args.extend(["--listen".into(), "127.0.0.1:0".into(), "--data-dir".into()]);
                args.push(data_dir.path().into());
                text.clone()
            }
            None => {
                let mut config = self.config.clone();
                config.set("data_dir", data_dir.path().to_string_lossy().into_owned());
                config.render()
            }
        };
        std::fs::write(&config_path, text).expect("writing plexus.toml");
        args.extend(self.args);

        let process = Process::spawn(&args).await?;
        let server_name = match self.config.get("server_name") {
            Some(Toml::Str(name)) if self.raw_config.is_none() => name.clone(),
            _ => DEFAULT_SERVER_NAME.to_owned(),
        };
        let shared_secret = match self.config.get("registration.shared_secret") {
            Some(Toml::Str(secret)) if self.raw_config.is_none() => Some(secret.clone()),
            _ => None,
        };
        if let Some(target) = &self.federation_target {
            target.set(process.federation_url.as_deref());
        }
        Ok(Server {
            federation_endpoint: process.federation_url.clone().map(Endpoint::new),
            federation_target: self.federation_target,
            endpoint: Endpoint::new(process.base_url.clone()),
            stdout: process.stdout.clone(),
            stderr: process.stderr.clone(),
            process: Some(process),
            http: http_client(),
            server_name,
            shared_secret,
            args,
            config_path,
            data_dir,
        })
    }
}

/// A running (or stopped) `plexus` server. The process is killed when this is dropped; the data
/// directory lives as long as this value, across restarts.
pub struct Server {
    // Declared first so the process is killed before its data directory is removed.
    process: Option<Process>,
    endpoint: Endpoint,
    /// The federation listener's `https://ADDR`, when the config has one.
    federation_endpoint: Option<Endpoint>,
    federation_target: Option<FederationTarget>,
    stdout: Tail,
    stderr: Tail,
    http: reqwest::Client,
    server_name: String,
    shared_secret: Option<String>,
    args: Vec<OsString>,
    config_path: PathBuf,
    data_dir: TempDir,
}

impl Server {
    /// Starts a server with the harness default config.
    pub async fn start() -> Server {
        Server::builder().start().await
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: Config::harness_default(DEFAULT_SERVER_NAME, DEFAULT_SHARED_SECRET),
            raw_config: None,
            args: Vec::new(),
            federation_target: None,
        }
    }

    /// The current base URL, e.g. `http://127.0.0.1:41234` (the port changes on restart).
    pub fn base_url(&self) -> String {
        self.endpoint.get()
    }

    /// The federation listener's current URL, e.g. `https://127.0.0.1:41235`; panics when the
    /// server has none (`[federation] listen` is empty by default).
    pub fn federation_url(&self) -> String {
        self.federation_endpoint().get()
    }

    pub(crate) fn federation_endpoint(&self) -> Endpoint {
        self.federation_endpoint
            .clone()
            .expect("this server has no federation listener; set federation.listen")
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub(crate) fn shared_secret(&self) -> &str {
        self.shared_secret
            .as_deref()
            .expect("this server's config has no registration.shared_secret")
    }

    /// The last lines the server wrote to stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        self.stderr.text()
    }

    /// The last lines the server wrote to stdout.
    pub fn stdout_tail(&self) -> String {
        self.stdout.text()
    }

    /// A client without an access token.
    pub fn client(&self) -> Client {
        Client::new(self.http.clone(), self.endpoint.clone())
    }

    /// The password [`Server::register_user`] gives an account.
    pub fn default_password(localpart: &str) -> String {
        format!("{localpart}-secret-password")
    }

    /// Registers `localpart` through the `m.login.dummy` flow with a default password.
    pub async fn register_user(&self, localpart: &str) -> User {
        self.register_user_with_password(localpart, &Server::default_password(localpart))
            .await
    }

    pub async fn register_user_with_password(&self, localpart: &str, password: &str) -> User {
        let client = self.client();
        let reply = client
            .register_dummy(json!({"username": localpart, "password": password}))
            .await;
        User::from_session(&client, password, &reply.ok())
    }

    /// Sends SIGKILL and waits for the process to die: nothing gets a chance to flush.
    pub async fn kill9(&mut self) {
        let mut process = self
            .process
            .take()
            .expect("kill9: the server is not running");
        process.child.kill().await.expect("killing plexus");
    }

    /// Sends SIGTERM and waits for the process to exit, returning its exit status.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut process = self
            .process
            .take()
            .expect("stop: the server is not running");
        let pid = process.child.id().expect("a running child has a pid");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("running `kill -TERM`");
        assert!(kill.success(), "`kill -TERM {pid}` failed: {kill}");
        match tokio::time::timeout(STOP_TIMEOUT, process.child.wait()).await {
            Ok(status) => status.expect("waiting for plexus"),
            Err(_) => panic!(
                "plexus did not exit within {STOP_TIMEOUT:?} of SIGTERM\n--- stderr (tail) ---\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// Starts the server again on the same data directory and config; a still-running server is
    /// stopped with SIGTERM first. Clients and users made earlier follow the new port.
    pub async fn restart(&mut self) {
        if self.process.is_some() {
            self.stop().await;
        }
        let process = Process::spawn(&self.args)
            .await
            .unwrap_or_else(|e| panic!("plexus did not restart: {e}"));
        self.endpoint.set(process.base_url.clone());
        if let (Some(endpoint), Some(url)) = (&self.federation_endpoint, &process.federation_url) {
            endpoint.set(url.clone());
        }
        if let Some(target) = &self.federation_target {
            target.set(process.federation_url.as_deref());
        }
        self.stdout = process.stdout.clone();
        self.stderr = process.stderr.clone();
        self.process = Some(process);
    }
}
