//! Federation transport: the server's signing key, TLS, server discovery, signed outgoing
//! requests, the authentication of incoming ones, and other servers' keys.
//!
//! `Federation` is what the rest of the server uses: `send` (a signed ruma request to another
//! server), `authenticate` (an incoming `X-Matrix` header checked against the origin's key),
//! `verify_key` (a server's public key valid at a time, for requests now and events later), and
//! the key documents the key endpoints serve. It owns no HTTP routes (`api::federation` does) and
//! no SQL (`storage::server_keys` does).

pub mod access;
pub mod client;
pub mod discovery;
pub mod keys;
pub mod listener;
pub mod request;
pub mod signing_key;
pub mod tls;

use std::time::Duration;

use ruma::api::OutgoingRequest;
use ruma::api::federation::authentication::XMatrix;
use ruma::api::path_builder::SinglePath;
use ruma::serde::Base64;
use ruma::signatures::Ed25519KeyPair;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName};

use crate::config::Config;
use crate::storage::Db;
use access::AccessList;
use client::{FederationClient, SendError};
use signing_key::{SigningKey, SigningKeyError};

/// The federation side of the server, built once at start-up.
pub struct Federation {
    server_name: OwnedServerName,
    enabled: bool,
    access: AccessList,
    client: FederationClient,
    db: Db,
    /// Signs key documents (the client holds its own copy for requests).
    keypair: Ed25519KeyPair,
    key_id: String,
    public_key: Base64,
    key_fetches: keys::KeyFetches,
}

/// Why federation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error(transparent)]
    Key(#[from] SigningKeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Why an incoming request's `X-Matrix` authentication was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The origin is not allowed by `[federation] allow`/`deny` (403 `M_FORBIDDEN`).
    #[error("{0} is not allowed to federate with this server")]
    Denied(OwnedServerName),
    /// Anything else (401 `M_UNAUTHORIZED`); the message says what.
    #[error("{0}")]
    Unauthorized(String),
}

impl Federation {
    pub fn new(
        config: &Config,
        signing_key: &SigningKey,
        db: Db,
    ) -> Result<Federation, FederationError> {
        let client = FederationClient::new(
            &config.federation,
            config.server_name.clone(),
            signing_key.to_keypair()?,
        )?;
        Ok(Federation {
            server_name: config.server_name.clone(),
            enabled: !config.federation.listen.is_empty(),
            access: AccessList::new(&config.federation.allow, &config.federation.deny),
            client,
            db,
            keypair: signing_key.to_keypair()?,
            key_id: signing_key.key_id(),
            public_key: Base64::new(signing_key.key.verifying_key().to_bytes().to_vec()),
            key_fetches: keys::KeyFetches::default(),
        })
    }

    /// Federation is on when the server has federation listeners: without them other servers
    /// could not fetch its keys, so nothing it sent could be authenticated.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `server` may federate with this one (`[federation] allow` and `deny`).
    pub fn allows(&self, server: &ServerName) -> bool {
        self.access.allows(server)
    }

    /// Sends ruma request `R` to `destination`, signed with this server's key, and returns the
    /// parsed response; times out after `client::REQUEST_TIMEOUT`.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
    {
        self.send_with_timeout(destination, request, client::REQUEST_TIMEOUT)
            .await
    }

    /// Like `send`, with a timeout of the caller's choosing.
    pub async fn send_with_timeout<R>(
        &self,
        destination: &ServerName,
        request: R,
        timeout: Duration,
    ) -> Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
    {
        self.check_destination(destination)?;
        self.client.send(destination, request, timeout).await
    }

    /// Sends a signed `GET`-like request without a body and returns once the answer's head has
    /// arrived, its body a stream the caller reads and bounds (remote media, which must not pass
    /// through memory whole). `timeout` covers the reading of the body too.
    pub async fn send_streaming(
        &self,
        destination: &ServerName,
        method: http::Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<http::Response<client::BodyStream>, SendError> {
        self.check_destination(destination)?;
        self.client
            .send_streaming(destination, method, path_and_query, timeout)
            .await
    }

    fn check_destination(&self, destination: &ServerName) -> Result<(), SendError> {
        if !self.enabled {
            return Err(SendError::Disabled);
        }
        if !self.access.allows(destination) {
            return Err(SendError::Denied(destination.to_owned()));
        }
        Ok(())
    }

    /// Authenticates an incoming request from its parsed `X-Matrix` header: the origin must be
    /// allowed, the header addressed to this server, and the signature made with a key of the
    /// origin that is valid now. Returns the origin.
    pub async fn authenticate(
        &self,
        header: &XMatrix,
        method: &http::Method,
        uri: &str,
        body: &[u8],
    ) -> Result<OwnedServerName, AuthError> {
        let origin = &header.origin;
        if let Some(destination) = &header.destination
            && destination != &self.server_name
        {
            return Err(AuthError::Unauthorized(format!(
                "the request is addressed to {destination}, not to {}",
                self.server_name
            )));
        }
        if !self.access.allows(origin) {
            return Err(AuthError::Denied(origin.clone()));
        }
        let key = self
            .verify_key(origin, &header.key, MilliSecondsSinceUnixEpoch::now())
            .await
            .map_err(|e| {
                AuthError::Unauthorized(format!("cannot check the signature of {origin}: {e}"))
            })?;
        request::verify(
            header,
            method,
            uri,
            body,
            &self.server_name,
            &header.key,
            &key,
        )
        .map_err(|e| AuthError::Unauthorized(format!("request from {origin} refused: {e}")))?;
        Ok(origin.clone())
    }
}
