//! A real Synapse next to Plexus, for interoperability stories.
//!
//! `Synapse::start()` installs the PyPI package `matrix-synapse` (pinned) into a virtual
//! environment under `target/` on first use (`target/synapse-venv`, reused while `import synapse`
//! works in it), writes a `homeserver.yaml` into a temporary directory and runs
//! `python -m synapse.app.homeserver` until the value is dropped. `PLEXUS_SYNAPSE_VENV=/dir` puts
//! the environment elsewhere; `PLEXUS_TEST_ECHO=1` echoes Synapse's log too.
//!
//! The setup, chosen so that neither side needs DNS, `.well-known` or a resolve table for the
//! other:
//! - Synapse's server name is `127.0.0.1:FPORT`, an IP literal with a port, and its federation
//!   listener (federation and key resources) serves TLS on that port with a self-signed
//!   certificate made here. Its client API is a second, plain HTTP listener.
//! - Plexus servers are named the same way by [`Federation::loopback`](crate::Federation):
//!   `127.0.0.1:PORT` where PORT forwards to their federation listener.
//! - Synapse checks no certificates (`federation_verify_certificates: false`), blocks no IP range
//!   (loopback is blocked by default), asks no notary (`trusted_key_servers: []`) and rate-limits
//!   nothing a test does. Users are registered through `/_synapse/admin/v1/register` with the
//!   shared secret.
//!
//! The config file is written as JSON, which is YAML too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use crate::admin::registration_mac;
use crate::client::{Client, Endpoint, http_client};
use crate::federation::federation_http_client;
use crate::process::Tail;
use crate::server::Server;
use crate::user::User;

/// The Synapse release the harness installs (installs cleanly on Python 3.11).
pub const SYNAPSE_VERSION: &str = "1.163.2";
const SHARED_SECRET: &str = "synapse-complement-shared-secret";
/// How long Synapse may take to answer `/_matrix/client/versions` after it was spawned (the first
/// start of a database runs every schema migration).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Attempts at starting, for when a port picked for Synapse was taken before it bound it.
const START_ATTEMPTS: usize = 3;

/// Where the Synapse virtual environment lives: next to the build output, so it is reused.
fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PLEXUS_SYNAPSE_VENV") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test>-… → target/synapse-venv
    exe.ancestors()
        .nth(3)
        .expect("target directory")
        .join("synapse-venv")
}

/// The virtual environment's python with Synapse importable, installing it once per process
/// (tests of one binary asking at the same time wait for the same installation). Panics, with
/// pip's output, when Synapse cannot be installed: a missing Synapse fails the tests, it does
/// not skip them.
pub fn synapse_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(install)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn install() -> Result<PathBuf, String> {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let import = format!(
        "import synapse, sys; sys.exit(0 if synapse.__version__.startswith('{SYNAPSE_VERSION}') else 1)"
    );
    let ready = Command::new(&python)
        .args(["-c", &import])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(python);
    }
    let started = Instant::now();
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "create a virtual environment for Synapse",
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("matrix-synapse=={SYNAPSE_VERSION}"),
        ]),
        "install matrix-synapse from PyPI",
    )?;
    eprintln!(
        "installed matrix-synapse {SYNAPSE_VERSION} into {} in {:.0?}",
        venv.display(),
        started.elapsed()
    );
    Ok(python)
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "could not {what} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A running Synapse; killed when dropped.
pub struct Synapse {
    // Held only to be killed on drop (`kill_on_drop`); declared first so the process is killed
    // before its directory is removed.
    _process: Child,
    server_name: String,
    client: Endpoint,
    federation: Endpoint,
    key_id: String,
    public_key: String,
    stderr: Tail,
    dir: TempDir,
}

impl Synapse {
    /// Installs Synapse if needed, starts it on fresh loopback ports and waits until its client
    /// API answers. Panics with Synapse's output when it does not come up.
    pub async fn start() -> Synapse {
        let python = tokio::task::spawn_blocking(synapse_python)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Synapse::try_start(&python).await {
                Ok(synapse) => return synapse,
                Err((message, port_taken)) => {
                    failures.push(message);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        panic!("synapse did not start:\n{}", failures.join("\n\n"));
    }

    /// One attempt; the error says whether a port was taken (worth another attempt).
    async fn try_start(python: &Path) -> Result<Synapse, (String, bool)> {
        let dir = tempfile::Builder::new()
            .prefix("synapse-test-")
            .tempdir()
            .expect("creating a temporary directory for synapse");
        let [client_port, federation_port] = free_ports();
        let server_name = format!("127.0.0.1:{federation_port}");

        // The signing key, in Synapse's (and Plexus's) format: `ed25519 <version> <seed>`.
        let seed = random_seed();
        let version = format!("a_{}", &hex::encode(&seed[..2]));
        let signing_key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public_key = STANDARD_NO_PAD.encode(signing_key.verifying_key().as_bytes());
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        std::fs::write(
            path("signing.key"),
            format!("ed25519 {version} {}\n", STANDARD_NO_PAD.encode(seed)),
        )
        .expect("writing synapse's signing key");
        let certificate = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("generating a certificate for synapse");
        std::fs::write(path("tls.crt"), certificate.cert.pem()).expect("writing tls.crt");
        std::fs::write(path("tls.key"), certificate.signing_key.serialize_pem())
            .expect("writing tls.key");

        let config = homeserver_config(&server_name, client_port, federation_port, &path);
        let config_path = path("homeserver.yaml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap())
            .expect("writing homeserver.yaml");

        let mut child = tokio::process::Command::new(python)
            .args([
                "-m",
                "synapse.app.homeserver",
                "--config-path",
                &config_path,
            ])
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| (format!("cannot spawn {}: {e}", python.display()), false))?;
        let stderr = Tail::default();
        drain(child.stdout.take().expect("piped"), stderr.clone());
        drain(child.stderr.take().expect("piped"), stderr.clone());

        let client = Endpoint::new(format!("http://127.0.0.1:{client_port}"));
        let http = http_client();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Let the drains catch up with the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let output = stderr.text();
                let port_taken = output.contains("Address already in use");
                return Err((format!("synapse exited ({status}):\n{output}"), port_taken));
            }
            let answer = http
                .get(format!("{}/_matrix/client/versions", client.get()))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.start_kill();
                return Err((
                    format!(
                        "synapse did not answer /_matrix/client/versions within \
                         {START_TIMEOUT:?}:\n{}",
                        stderr.text()
                    ),
                    false,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if std::env::var_os("PLEXUS_TEST_ECHO").is_some() {
            eprintln!(
                "synapse {server_name} up in {:.1?} (client http://127.0.0.1:{client_port})",
                started.elapsed()
            );
        }
        Ok(Synapse {
            _process: child,
            server_name,
            client,
            federation: Endpoint::new(format!("https://127.0.0.1:{federation_port}")),
            key_id: format!("ed25519:{version}"),
            public_key,
            stderr,
            dir,
        })
    }

    /// `127.0.0.1:PORT`, PORT being the TLS federation listener's.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// `http://127.0.0.1:PORT` of the client API.
    pub fn base_url(&self) -> String {
        self.client.get()
    }

    /// The signing key's id (`ed25519:a_…`) and public key (unpadded base64).
    pub fn signing_key(&self) -> (&str, &str) {
        (&self.key_id, &self.public_key)
    }

    /// A client of the client API, without an access token.
    pub fn client(&self) -> Client {
        Client::new(http_client(), self.client.clone())
    }

    /// A client of the federation listener (TLS, certificate not checked).
    pub fn federation_client(&self) -> Client {
        Client::new(federation_http_client(), self.federation.clone())
    }

    /// The data directory (config, database, keys).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines Synapse logged, for failure messages.
    pub fn log_tail(&self) -> String {
        self.stderr.text()
    }

    /// Registers `localpart` through the shared secret (`/_synapse/admin/v1/register`).
    pub async fn register_user(&self, localpart: &str) -> User {
        let client = self.client();
        let password = Server::default_password(localpart);
        let nonce = client.get("/_synapse/admin/v1/register").await.ok()["nonce"]
            .as_str()
            .expect("synapse gave a registration nonce")
            .to_owned();
        let mac = registration_mac(SHARED_SECRET, &nonce, localpart, &password, false);
        let body = json!({
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": false,
            "mac": mac,
        });
        let reply = client.post("/_synapse/admin/v1/register", body).await;
        User::from_session(&client, &password, &reply.ok())
    }
}

/// The homeserver.yaml of a test Synapse; `path(name)` is a file in its directory.
fn homeserver_config(
    server_name: &str,
    client_port: u16,
    federation_port: u16,
    path: &dyn Fn(&str) -> String,
) -> Value {
    let unlimited = json!({"per_second": 10_000, "burst_count": 10_000});
    json!({
        "server_name": server_name,
        "pid_file": path("homeserver.pid"),
        "report_stats": false,
        "listeners": [
            {
                "port": client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": false,
                "x_forwarded": false,
                "resources": [{"names": ["client"], "compress": false}],
            },
            {
                "port": federation_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": true,
                "resources": [{"names": ["federation", "keys"], "compress": false}],
            },
        ],
        "tls_certificate_path": path("tls.crt"),
        "tls_private_key_path": path("tls.key"),
        "database": {"name": "sqlite3", "args": {"database": path("homeserver.db")}},
        "media_store_path": path("media"),
        "signing_key_path": path("signing.key"),
        "registration_shared_secret": SHARED_SECRET,
        "enable_registration": false,
        "macaroon_secret_key": "synapse-complement-macaroon-secret",
        "form_secret": "synapse-complement-form-secret",
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "federation_verify_certificates": false,
        "ip_range_blacklist": [],
        "federation_ip_range_blacklist": [],
        "url_preview_enabled": false,
        "enable_metrics": false,
        "presence": {"enabled": false},
        "rc_message": unlimited,
        "rc_registration": unlimited,
        "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
        "rc_joins": {"local": unlimited, "remote": unlimited},
        "rc_joins_per_room": unlimited,
        "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
        "rc_admin_redaction": unlimited,
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 10_000,
            "sleep_delay": 0,
            "reject_limit": 10_000,
            "concurrent": 100,
        },
    })
}

/// Two loopback ports free a moment ago (both held until both are known, so they differ).
fn free_ports() -> [u16; 2] {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("an address").port();
    [port(&a), port(&b)]
}

/// 32 bytes nobody else will pick (a test key, not a secret).
fn random_seed() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut seed = [0u8; 32];
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_usize(i);
        hasher.write_u32(std::process::id());
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    seed
}

/// Keeps the last lines of `pipe` (echoed with `PLEXUS_TEST_ECHO`), for as long as it is open.
fn drain(pipe: impl AsyncRead + Unpin + Send + 'static, tail: Tail) {
    let echo = std::env::var_os("PLEXUS_TEST_ECHO").is_some();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[synapse] {line}");
            }
            tail.push(line);
        }
    });
}
