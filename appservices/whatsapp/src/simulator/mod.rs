//! A local simulator of the WhatsApp Business Cloud API (Meta Graph API) for the bridge's tests
//! and for demos. It answers the Graph API surface a bridge uses — `POST /{phone-number-id}/messages`,
//! media upload, lookup, download and deletion — with the documented success shapes and error
//! objects, enforces the access token, the 24-hour customer-service window and the rate limits,
//! and sends signed webhooks for inbound messages and statuses to the bridge. A control API under
//! `/_sim/` lets tests act as WhatsApp users and inspect what the bridge sent. It must never
//! accept what the real API would refuse: a bridge that passes against it should pass against
//! Meta.

mod control;
pub mod error;
mod graph;
mod groups;
pub mod ids;
pub mod multipart;
pub mod state;
pub mod validate;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use state::State;

/// What the simulated business account looks like and how it reaches the bridge.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Graph API version in URLs the simulator gives out (`v21.0`); requests may use any
    /// well-formed version, as with Graph.
    pub api_version: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    /// The WhatsApp Business Account id, `entry[].id` of webhooks.
    pub waba_id: String,
    /// The only access token accepted (`Authorization: Bearer …`).
    pub access_token: String,
    /// The key of the `X-Hub-Signature-256` HMAC.
    pub app_secret: String,
    /// The token the simulator presents in the verification handshake.
    pub verify_token: String,
    /// The bridge's webhook callback URL (can be set later through the control API).
    pub webhook_url: Option<String>,
    /// Send `sent` then `delivered` statuses for every accepted message, as a phone online would.
    pub auto_statuses: bool,
    /// The first retry delay of a refused webhook; each next one doubles.
    pub retry_base: Duration,
    /// Delivery attempts per webhook before it is abandoned.
    pub max_attempts: u32,
    /// Approved template names (besides those added through the control API).
    pub templates: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_version: "v21.0".into(),
            phone_number_id: "106540352242922".into(),
            display_phone_number: "15550783881".into(),
            waba_id: "102290129340398".into(),
            access_token: "EAAsimulatortoken".into(),
            app_secret: "simulator-app-secret".into(),
            verify_token: "simulator-verify-token".into(),
            webhook_url: None,
            auto_statuses: false,
            retry_base: Duration::from_secs(1),
            max_attempts: 8,
            templates: vec!["hello_world".into()],
        }
    }
}

/// What every handler shares.
pub(crate) struct Shared {
    pub config: Config,
    /// `http://host:port` of the simulator itself, for media download URLs.
    pub base_url: String,
    state: Mutex<State>,
    pub webhook_queue: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    /// Woken after every webhook delivery attempt.
    pub webhook_progress: Notify,
    pub http: reqwest::Client,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running simulator.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Serves the simulator on `listener` (bind port 0 in tests) until dropped or stopped.
    pub async fn start(listener: TcpListener, config: Config) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let mut state = State::default();
        state.webhook_url = config.webhook_url.clone();
        state.templates = config.templates.iter().cloned().collect();
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            config,
            state: Mutex::new(state),
            webhook_queue: queue,
            webhook_progress: Notify::new(),
            http: crate::https::client(Duration::from_secs(20)).map_err(std::io::Error::other)?,
        });
        let worker = tokio::spawn(webhook::worker(shared.clone(), receiver));
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "simulator server stopped");
            }
            worker.abort();
        });
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, where the control API lives under `/_sim/`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The Graph API base a bridge is configured with: `http://host:port/v21.0`.
    pub fn graph_url(&self) -> String {
        format!(
            "{}/{}",
            self.shared.base_url, self.shared.config.api_version
        )
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Runs the verification handshake against the configured callback with the configured
    /// verify token, as Meta does when the callback URL is saved.
    pub async fn verify_webhook(&self) -> Result<webhook::Handshake, String> {
        let url = self
            .shared
            .lock()
            .webhook_url
            .clone()
            .ok_or("no webhook URL configured")?;
        webhook::handshake(
            &self.shared,
            &url,
            "subscribe",
            &self.shared.config.verify_token,
        )
        .await
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/{version}/{phone_number_id}/messages",
            post(graph::send_message),
        )
        .route(
            "/{version}/{phone_number_id}/media",
            post(graph::upload_media),
        )
        .route(
            "/{version}/{media_id}",
            get(graph::get_media).delete(graph::delete_media),
        )
        .route("/whatsapp_business/attachments/", get(graph::download))
        .nest("/_sim", control::router())
        .fallback(graph::unknown_path)
        // Documents may be up to 100 MB.
        .layer(DefaultBodyLimit::max(110 * 1024 * 1024))
        .with_state(shared)
}
