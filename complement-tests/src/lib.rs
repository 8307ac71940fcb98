//! A black-box harness for Plexus: it starts real `plexus` binaries on loopback, each with its own
//! temporary data directory and config file, and drives them over HTTP only.
//!
//! A test reads like a user story:
//!
//! ```no_run
//! # async fn story() {
//! use complement_tests::{Server, json};
//! let server = Server::start().await;
//! let alice = server.register_user("alice").await;
//! alice.set_displayname("Alice").await;
//! let reply = server.client().get("/_matrix/client/v3/account/whoami").await;
//! reply.assert_error(401, "M_MISSING_TOKEN");
//! let room_id = alice.create_room(json!({"preset": "public_chat"})).await;
//! alice.send_message(&room_id, "Hello!").await;
//! # }
//! ```
//!
//! Run with `cargo test --workspace` (which builds `target/debug/plexus` first), or after
//! `cargo build -p plexus` with `cargo test -p complement-tests`. `PLEXUS_BIN=/path/to/plexus`
//! tests another binary; `PLEXUS_TEST_ECHO=1` echoes every server's stdout and stderr lines.
//!
//! Nothing here is global: every [`Server`] owns its process, port and directory, so a test can run
//! several at once (for federation) and tests run in parallel. Servers that federate with each
//! other come from one [`Federation`] (`Federation::new(["hs1.test", "hs2.test"])`, then
//! `federation.server("hs1.test").start()`); [`ServerKey`] signs federation requests as a server.
//! A [`FederationPeer`] is a fake homeserver inside the test process, for stories told from the
//! other side of federation (it serves its keys, records what it receives, signs requests and
//! PDUs). A [`Synapse`] is a real Synapse (installed from PyPI into `target/synapse-venv`) for
//! interoperability stories, federating with servers of [`Federation::loopback`]. A
//! [`TestAppservice`] is a bridge inside the test process (registration file, transactions,
//! queries, ping).

mod admin;
mod appservice;
mod binary;
mod client;
mod config;
pub mod e2ee;
mod federation;
mod federation_peer;
mod process;
mod push_gateway;
mod reply;
mod room;
mod server;
mod synapse;
mod user;
mod wait;

pub use admin::registration_mac;
pub use appservice::{
    AppserviceBuilder, AppserviceRequest, TestAppservice, Transaction, masquerade,
};
pub use binary::{CliOutput, plexus_bin, run_plexus};
pub use client::{Client, Request, encode};
pub use config::{Config, Toml};
pub use federation::{Federation, ServerKey, canonical_json, verify_signature};
pub use federation_peer::{
    FederationPeer, PeerClient, PeerPdu, PeerReply, PeerRequest, pdu_event_id, verify_pdu,
};
pub use process::StartError;
pub use push_gateway::PushGateway;
pub use reply::Reply;
pub use reqwest::Method;
pub use room::{chunk, message_bodies, query, room_path, state_path, txn_id};
pub use serde_json::{Value, json};
pub use server::{DEFAULT_SHARED_SECRET, Server, ServerBuilder};
pub use synapse::{SYNAPSE_VERSION, Synapse, synapse_python};
pub use user::User;
pub use wait::{now_ms, wait_until};
