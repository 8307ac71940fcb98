//! The logic of the server, in domain terms ("register this user", "log this device out"). Handlers
//! in `api/` call these methods; these call `storage/` and never know about HTTP.
//!
//! `Services` is one struct whose methods are split by concept across the files of this module.

pub mod account_data;
pub mod accounts;
pub mod appservice;
pub mod client_txns;
mod devices;
mod error;
mod federation_in;
mod filters;
pub mod key_backup;
pub mod keys;
pub mod media;
pub mod notifier;
pub mod openid;
mod outbox;
mod passwords;
pub mod presence;
mod profile;
mod push_evaluator;
mod push_rules;
mod pushers;
pub mod rate_limit;
pub(crate) mod receipts;
mod registration_tokens;
mod remote_profile;
pub mod rooms;
pub mod shared_secret;
mod tags;
pub mod to_device;
mod token_cache;
pub mod tokens;
mod typing;
pub mod uiaa;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use ruma::{OwnedDeviceId, OwnedUserId};

pub use error::{Error, Result};
pub use registration_tokens::NewRegistrationToken;
pub use tokens::{IssuedTokens, UserSession};

use crate::config::Config;
use crate::federation::Federation;
use crate::federation::signing_key::SigningKey;
use crate::metrics::Metrics;
use crate::storage::Db;

/// Per room, the members whose events lazy-loading `/sync` has sent to one device.
pub type LazySent = HashMap<String, HashSet<String>>;

/// Everything a request handler may ask for. Built once at start-up; no globals.
pub struct Services {
    pub config: Config,
    pub db: Db,
    pub rate_limiter: rate_limit::RateLimiter,
    pub signing_key: SigningKey,
    /// Outgoing federation requests, request authentication and server keys.
    pub federation: Federation,
    pub metrics: Metrics,
    /// The registered appservices (bridges and bots).
    pub appservices: appservice::Appservices,
    pub notifier: notifier::Notifier,
    /// Wakes the push evaluator when events are committed.
    pub push_wake: tokio::sync::Notify,
    /// Bumped whenever a user's push rules change, so the evaluator's copies are dropped.
    pub push_rules_generation: std::sync::atomic::AtomicU64,
    /// Wakes the push outbox when the evaluator has recorded notifications.
    pub pusher_wake: tokio::sync::Notify,
    /// Each user's push rules as evaluation last read them, with the generation they were
    /// read at (`push_evaluator.rs`).
    pub(crate) push_rule_cache: Mutex<(
        u64,
        HashMap<OwnedUserId, std::sync::Arc<push_evaluator::UserPushRules>>,
    )>,
    /// Events whose push actions were recorded with them, until the evaluator passes them.
    pub(crate) push_inline: Mutex<std::collections::BTreeSet<i64>>,
    /// Wakes the federation outbox when events are committed or EDUs queued.
    pub federation_wake: tokio::sync::Notify,
    /// Wakes the appservice outbox when events are committed or an appservice is back.
    pub appservice_wake: tokio::sync::Notify,
    /// Appservices known to be reachable again (a successful ping): the appservice outbox ends
    /// their back-off on its next round.
    appservice_retry_now: Mutex<HashSet<String>>,
    /// Destinations the federation sender is backing off from, so that a request from one of
    /// them (it is back) can end the back-off without a database read per request.
    backed_off: Mutex<HashSet<String>>,
    password_slots: passwords::PasswordSlots,
    /// The one HTTP client for push gateways.
    pub push_client: reqwest::Client,
    /// Per device, the members whose events lazy-loading `/sync` has sent, per room.
    pub lazy_members: Mutex<HashMap<(OwnedUserId, OwnedDeviceId), LazySent>>,
    /// The latest events of active rooms, fed by every commit, for `/sync`'s fast path.
    pub tails: std::sync::Arc<crate::sync::tails::RoomTails>,
    /// What each device's last long-poll knew, for the request that continues from it.
    pub sync_resume: crate::sync::ResumeCache,
    /// The media repository's files, waiters and background thumbnailing.
    pub media: media::Media,
    /// Which event each recent client send with a transaction id made.
    pub client_txns: client_txns::ClientTxns,
    room_locks: rooms::RoomLocks,
    token_cache: token_cache::TokenCache,
    shared_secret_nonces: Mutex<shared_secret::Nonces>,
    typing: typing::Typing,
    presence: presence::Presence,
}

impl Services {
    pub fn new(
        config: Config,
        db: Db,
        signing_key: SigningKey,
        federation: Federation,
        appservices: appservice::Appservices,
        metrics: Metrics,
    ) -> Services {
        let rate_limiter =
            rate_limit::RateLimiter::new(&config.rate_limits).exempting(&appservices);
        let media = media::Media::new(&config, db.clone());
        let tails = std::sync::Arc::new(crate::sync::tails::RoomTails::default());
        let fed = tails.clone();
        if let Err(e) = db.set_commit_observer(std::sync::Arc::new(move |c| fed.feed(c))) {
            // Another `Services` over the same database already follows its commits.
            tracing::warn!(error = %e, "room tails not fed; /sync reads the database");
        }
        let client_txns = client_txns::ClientTxns::new(db.clone());
        Services {
            config,
            db,
            rate_limiter,
            signing_key,
            federation,
            metrics,
            appservices,
            notifier: notifier::Notifier::default(),
            push_wake: tokio::sync::Notify::new(),
            push_rules_generation: std::sync::atomic::AtomicU64::new(0),
            pusher_wake: tokio::sync::Notify::new(),
            push_rule_cache: Mutex::new((0, HashMap::new())),
            push_inline: Mutex::new(std::collections::BTreeSet::new()),
            federation_wake: tokio::sync::Notify::new(),
            appservice_wake: tokio::sync::Notify::new(),
            appservice_retry_now: Mutex::new(HashSet::new()),
            backed_off: Mutex::new(HashSet::new()),
            password_slots: passwords::PasswordSlots::default(),
            push_client: outbox::push_gateway::gateway_client(),
            lazy_members: Mutex::new(HashMap::new()),
            tails,
            sync_resume: crate::sync::ResumeCache::default(),
            media,
            client_txns,
            room_locks: rooms::RoomLocks::default(),
            token_cache: token_cache::TokenCache::default(),
            shared_secret_nonces: Mutex::new(shared_secret::Nonces::default()),
            typing: typing::Typing::default(),
            presence: presence::Presence::default(),
        }
    }

    pub fn server_name(&self) -> &ruma::ServerName {
        &self.config.server_name
    }
}

/// Random text for tokens, session ids and nonces: `len` characters from `[A-Za-z0-9]`.
pub fn random_string(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
