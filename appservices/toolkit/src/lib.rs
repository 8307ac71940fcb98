//! The bridge toolkit: what every Plexus bridge is built on. A bridge is an application service
//! (Matrix Application Service API) that mirrors conversations of another network into rooms.
//! It speaks to the homeserver only through the Matrix APIs, so it runs against Plexus or any
//! other homeserver.
//!
//! The pieces:
//! - [`registration`] — the bridge's registration (tokens, namespaces) and its YAML file.
//! - [`receiver`] — the HTTP server the homeserver pushes transactions and queries to; it hands
//!   events, in order and each transaction once, to a [`Bridge`].
//! - [`client`] — the Client-Server API as the bridge bot and as ghost users (the remote
//!   network's people), with their remote timestamps.
//! - [`store`] — SQLite mappings of remote ids to Matrix ids: portals, ghosts, messages (the
//!   loop-breaker), handled transactions, delivery states.
//! - [`format`] — Matrix HTML and plain text to and from WhatsApp- and Discord-style markdown.
//! - [`delivery`] — the delivery state of a Matrix message sent to the remote network, shown to
//!   its sender.
//! - [`commands`] — a management bot taking `!prefix command args`.
//!
//! # Example
//!
//! A bridge implements [`Bridge`] and serves [`receiver::router`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use bridge_toolkit::{Bridge, EphemeralEvent, Error, MatrixEvent, client::Client,
//!     receiver, registration::Registration, store::Store};
//!
//! struct Echo { client: Client, store: Store }
//!
//! impl Bridge for Echo {
//!     async fn handle_event(&self, event: MatrixEvent) -> Result<(), Error> {
//!         // The bridge's own users never get bridged back: that would echo.
//!         if self.client.is_bridge_user(&event.sender) { return Ok(()); }
//!         let Some(message) = event.message() else { return Ok(()) };
//!         if !self.store.claim_outbound(&event.event_id, &event.room_id)? { return Ok(()); }
//!         println!("to the remote network: {}", message.body());
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Error> {
//! let registration = Registration::load("echo-registration.yaml".as_ref())?;
//! let store = Store::open("echo.db".as_ref())?;
//! let client = Client::new("http://localhost:8008", &registration, "localhost".try_into().unwrap())?;
//! let bridge = Arc::new(Echo { client, store: store.clone() });
//! let app = receiver::router(bridge, &registration.hs_token, store);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:29400").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod client;
pub mod commands;
pub mod delivery;
mod event;
pub mod format;
pub mod receiver;
pub mod registration;
pub mod store;

use std::future::Future;

use ruma::{OwnedRoomAliasId, OwnedUserId};

pub use event::{EphemeralEvent, MatrixEvent};

/// What a bridge does with what the homeserver sends it. The receiver calls these one at a time,
/// in the order of the transactions and of the events in them.
///
/// Return an error only for a failure a retry may fix (the remote network is down): the
/// transaction is then answered with an error and the homeserver sends it again; events of it
/// that were handled already are not handed over a second time. A message that can never be
/// bridged is a delivery failure ([`delivery`]), not an error.
pub trait Bridge: Send + Sync + 'static {
    /// One room event (timeline or state) of a transaction.
    fn handle_event(&self, event: MatrixEvent) -> impl Future<Output = Result<(), Error>> + Send;

    /// One ephemeral event (typing, receipt, presence) of a transaction, when the registration
    /// asks for them (`receive_ephemeral`).
    fn handle_ephemeral(
        &self,
        event: EphemeralEvent,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = event;
        async { Ok(()) }
    }

    /// `GET /users/{userId}`: whether the bridge knows this user of its namespace. Answering
    /// `true` promises the user is registered already (create it before answering).
    fn query_user(&self, user_id: OwnedUserId) -> impl Future<Output = Result<bool, Error>> + Send {
        let _ = user_id;
        async { Ok(false) }
    }

    /// `GET /rooms/{alias}`: whether the bridge knows this alias of its namespace. Answering
    /// `true` promises the room exists with the alias bound to it.
    fn query_alias(
        &self,
        alias: OwnedRoomAliasId,
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        let _ = alias;
        async { Ok(false) }
    }
}

/// Everything that can go wrong in the toolkit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The homeserver answered with a Matrix error.
    #[error("homeserver answered {status} {errcode}: {message}")]
    Matrix {
        status: u16,
        errcode: String,
        message: String,
    },
    /// The homeserver could not be reached, or its answer was not what the API promises.
    #[error("homeserver request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("registration: {0}")]
    Registration(String),
    #[error("invalid data: {0}")]
    Invalid(String),
    /// A bridge's own failure, from its [`Bridge`] handlers or commands.
    #[error("{0}")]
    Bridge(String),
}

impl Error {
    /// A bridge's own failure.
    pub fn bridge(message: impl Into<String>) -> Error {
        Error::Bridge(message.into())
    }

    /// The Matrix `errcode`, when the homeserver answered with one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Error::Matrix { errcode, .. } => Some(errcode),
            _ => None,
        }
    }
}
