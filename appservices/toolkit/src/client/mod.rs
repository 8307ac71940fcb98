//! The bridge's Matrix client: the Client-Server API with the registration's `as_token`, acting
//! as the bridge bot or, with `?user_id=`, as one of its ghosts (identity assertion), and giving
//! remote messages their remote time with `?ts=` (timestamp massaging).
//!
//! What a bridge needs of it: ghosts that exist ([`Client::ensure_registered`]), are in the
//! portal ([`Client::ensure_joined`]) and look like the remote person ([`Client::set_profile`]);
//! portal rooms ([`Client::create_portal_room`]); messages, reactions, redactions, receipts and
//! typing as a ghost; media up and down. Sends carry transaction ids of the client's own, and a
//! send that fails on the way (no answer, 429, 502–504) is repeated with the same transaction
//! id, so the homeserver stores it once; other `POST`s are repeated only after a 429.
//!
//! Joins and registrations are remembered for the life of the client, so a busy portal costs one
//! join per ghost, not one per message.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::Regex;
use reqwest::Method;
use ruma::{
    MxcUri, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId,
    ServerName, UserId,
};
use serde_json::{Value, json};

use crate::Error;
use crate::registration::Registration;

mod media;
mod room;

pub use media::Media;
pub use room::{BridgeInfo, PortalRoom};

/// At most this many attempts at a request that fails on the way.
const ATTEMPTS: u32 = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The client; clones share connections and caches.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    homeserver: String,
    as_token: String,
    registration: Registration,
    bot: OwnedUserId,
    server_name: OwnedServerName,
    /// The registration's user namespaces, compiled once.
    user_namespaces: Vec<Regex>,
    /// Transaction ids are `<prefix><counter>`; the prefix (start time) keeps them apart from
    /// the ids of an earlier run.
    txn_prefix: String,
    txn_counter: AtomicU64,
    registered: Mutex<HashSet<OwnedUserId>>,
    joined: Mutex<HashSet<(OwnedUserId, OwnedRoomId)>>,
}

impl Client {
    /// A client for the homeserver at `homeserver` (e.g. `http://127.0.0.1:8008`), acting for
    /// `registration` on `server_name`.
    pub fn new(
        homeserver: &str,
        registration: &Registration,
        server_name: &ServerName,
    ) -> Result<Client, Error> {
        let bot =
            UserId::parse_with_server_name(registration.sender_localpart.as_str(), server_name)
                .map_err(|e| Error::Registration(format!("sender_localpart: {e}")))?;
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let user_namespaces = registration
            .namespaces
            .users
            .iter()
            .map(|n| Regex::new(&format!("^(?:{})", n.regex)))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Registration(format!("namespaces.users: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                user_namespaces,
                http: http_client()?,
                homeserver: homeserver.trim_end_matches('/').to_owned(),
                as_token: registration.as_token.clone(),
                registration: registration.clone(),
                bot,
                server_name: server_name.to_owned(),
                txn_prefix: format!("bt{start}."),
                txn_counter: AtomicU64::new(0),
                registered: Mutex::new(HashSet::new()),
                joined: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The bridge bot.
    pub fn bot(&self) -> &UserId {
        &self.inner.bot
    }

    pub fn server_name(&self) -> &ServerName {
        &self.inner.server_name
    }

    pub fn registration(&self) -> &Registration {
        &self.inner.registration
    }

    /// The bot or a ghost: a user whose events come from the bridge itself.
    pub fn is_bridge_user(&self, user: &UserId) -> bool {
        user == self.inner.bot
            || (user.server_name() == self.inner.server_name
                && self
                    .inner
                    .user_namespaces
                    .iter()
                    .any(|r| r.is_match(user.as_str())))
    }

    /// The user id of the ghost with this localpart.
    pub fn ghost_id(&self, localpart: &str) -> Result<OwnedUserId, Error> {
        UserId::parse_with_server_name(localpart, &self.inner.server_name)
            .map_err(|e| Error::Invalid(format!("ghost localpart {localpart:?}: {e}")))
    }

    /// A new transaction id for a send.
    pub fn next_txn_id(&self) -> String {
        let n = self.inner.txn_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.inner.txn_prefix)
    }

    /// `POST /_matrix/client/v1/appservice/{id}/ping`: makes the homeserver ping the bridge's
    /// receiver, proving both directions work. Answers the round trip in milliseconds.
    pub async fn ping(&self) -> Result<u64, Error> {
        let path = format!(
            "/_matrix/client/v1/appservice/{}/ping",
            encode(&self.inner.registration.id)
        );
        let answer = self
            .call(Method::POST, &path, None, &[], Some(&json!({})))
            .await?;
        Ok(answer["duration_ms"].as_u64().unwrap_or_default())
    }

    /// Registers the namespace user `localpart` (`m.login.application_service`, no login);
    /// a user that exists already is fine.
    pub async fn ensure_registered(&self, localpart: &str) -> Result<OwnedUserId, Error> {
        let user = self.ghost_id(localpart)?;
        if self
            .inner
            .registered
            .lock()
            .map(|s| s.contains(&user))
            .unwrap_or(false)
        {
            return Ok(user);
        }
        let body = json!({
            "type": "m.login.application_service",
            "username": localpart,
            "inhibit_login": true,
        });
        match self
            .call(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                &[],
                Some(&body),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => {}
            Err(e) => return Err(e),
        }
        if let Ok(mut registered) = self.inner.registered.lock() {
            registered.insert(user.clone());
        }
        Ok(user)
    }

    /// Makes `user` a member of `room`: joins, and when the room refuses (invite only), has the
    /// bot invite the user and joins again.
    pub async fn ensure_joined(&self, user: &UserId, room: &RoomId) -> Result<(), Error> {
        let key = (user.to_owned(), room.to_owned());
        if self
            .inner
            .joined
            .lock()
            .map(|s| s.contains(&key))
            .unwrap_or(false)
        {
            return Ok(());
        }
        match self.join(user, room).await {
            Ok(()) => {}
            Err(e) if e.errcode() == Some("M_FORBIDDEN") && user != self.bot() => {
                self.invite(self.bot(), room, user).await?;
                self.join(user, room).await?;
            }
            Err(e) => return Err(e),
        }
        if let Ok(mut joined) = self.inner.joined.lock() {
            joined.insert(key);
        }
        Ok(())
    }

    /// Forgets that `user` is in `room` (after a kick or leave), so the next
    /// [`Client::ensure_joined`] joins again.
    pub fn forget_membership(&self, user: &UserId, room: &RoomId) {
        if let Ok(mut joined) = self.inner.joined.lock() {
            joined.remove(&(user.to_owned(), room.to_owned()));
        }
    }

    /// `POST /join/{roomId}` as `user`.
    pub async fn join(&self, user: &UserId, room: &RoomId) -> Result<(), Error> {
        let path = format!("/_matrix/client/v3/join/{}", encode(room.as_str()));
        self.call(Method::POST, &path, Some(user), &[], Some(&json!({})))
            .await?;
        Ok(())
    }

    /// `POST /rooms/{roomId}/invite` by `inviter`; an invitee already in the room is fine.
    pub async fn invite(
        &self,
        inviter: &UserId,
        room: &RoomId,
        invitee: &UserId,
    ) -> Result<(), Error> {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", encode(room.as_str()));
        let body = json!({"user_id": invitee});
        match self
            .call(Method::POST, &path, Some(inviter), &[], Some(&body))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.errcode() == Some("M_FORBIDDEN") => {
                // Refused: fine when the invitee is in the room or invited already.
                match self.membership(inviter, room, invitee).await.as_deref() {
                    Some("join" | "invite") => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `user`'s membership in `room`, as `viewer` sees it; `None` when unknown.
    pub async fn membership(
        &self,
        viewer: &UserId,
        room: &RoomId,
        user: &UserId,
    ) -> Option<String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            encode(room.as_str()),
            encode(user.as_str())
        );
        let content = self
            .call(Method::GET, &path, Some(viewer), &[], None)
            .await
            .ok()?;
        content["membership"].as_str().map(str::to_owned)
    }

    /// The joined members of `room` (`GET /rooms/{roomId}/joined_members`), as `viewer`, who
    /// must be in the room.
    pub async fn joined_members(
        &self,
        viewer: &UserId,
        room: &RoomId,
    ) -> Result<Vec<OwnedUserId>, Error> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            encode(room.as_str())
        );
        let answer = self
            .call(Method::GET, &path, Some(viewer), &[], None)
            .await?;
        Ok(answer["joined"]
            .as_object()
            .into_iter()
            .flat_map(|joined| joined.keys())
            .filter_map(|user| UserId::parse(user.as_str()).ok())
            .collect())
    }

    /// The room `alias` names (`GET /directory/room/{roomAlias}`).
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId, Error> {
        let path = format!(
            "/_matrix/client/v3/directory/room/{}",
            encode(alias.as_str())
        );
        let answer = self.call(Method::GET, &path, None, &[], None).await?;
        answer["room_id"]
            .as_str()
            .and_then(|room| RoomId::parse(room).ok())
            .ok_or_else(|| Error::Invalid("the homeserver answered no room_id".into()))
    }

    /// `POST /rooms/{roomId}/leave` as `user`.
    pub async fn leave(&self, user: &UserId, room: &RoomId) -> Result<(), Error> {
        let path = format!("/_matrix/client/v3/rooms/{}/leave", encode(room.as_str()));
        self.call(Method::POST, &path, Some(user), &[], Some(&json!({})))
            .await?;
        self.forget_membership(user, room);
        Ok(())
    }

    /// Sets a ghost's display name and avatar (each when given).
    pub async fn set_profile(
        &self,
        user: &UserId,
        displayname: Option<&str>,
        avatar_url: Option<&MxcUri>,
    ) -> Result<(), Error> {
        let base = format!("/_matrix/client/v3/profile/{}", encode(user.as_str()));
        if let Some(name) = displayname {
            let body = json!({"displayname": name});
            self.call(
                Method::PUT,
                &format!("{base}/displayname"),
                Some(user),
                &[],
                Some(&body),
            )
            .await?;
        }
        if let Some(avatar) = avatar_url {
            let body = json!({"avatar_url": avatar});
            self.call(
                Method::PUT,
                &format!("{base}/avatar_url"),
                Some(user),
                &[],
                Some(&body),
            )
            .await?;
        }
        Ok(())
    }

    /// The query parameters that make a request act as `user`.
    fn identity(&self, user: Option<&UserId>) -> Vec<(&'static str, String)> {
        match user {
            Some(user) if user != self.inner.bot => vec![("user_id", user.to_string())],
            _ => Vec::new(),
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut url = format!("{}{path}", self.inner.homeserver);
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&encode(value));
        }
        url
    }

    /// One Client-Server API call with the `as_token`, as `user` (the bot when `None`),
    /// repeated while it fails on the way.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        user: Option<&UserId>,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let mut full_query = self.identity(user);
        full_query.extend(query.iter().map(|(k, v)| (*k, v.clone())));
        let url = self.url(path, &full_query);
        // A `PUT` (sends carry their transaction id) or `GET` may be repeated when its answer
        // was lost; a `POST` only when the homeserver said it did nothing (429), since a lost
        // answer to `createRoom` may hide a created room.
        let idempotent = method == Method::PUT || method == Method::GET;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.inner.as_token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let retry_after = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if !(status == 429 || (idempotent && matches!(status, 502..=504)))
                        || attempt >= ATTEMPTS
                    {
                        return answer_json(response).await;
                    }
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    body["retry_after_ms"].as_u64().map(Duration::from_millis)
                }
                Err(e) if attempt >= ATTEMPTS || !idempotent => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "homeserver request failed; retrying");
                    None
                }
            };
            let backoff = Duration::from_millis(250 << attempt);
            tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(30))).await;
        }
    }
}

/// The HTTP client: rustls with ring and the Mozilla roots, a timeout per request.
fn http_client() -> Result<reqwest::Client, Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Invalid(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("plexus-bridge-toolkit/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

async fn answer_json(response: reqwest::Response) -> Result<Value, Error> {
    let status = response.status();
    let bytes = response.bytes().await?;
    let body: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    if status.is_success() {
        Ok(body)
    } else {
        Err(matrix_error(status.as_u16(), &body))
    }
}

fn matrix_error(status: u16, body: &Value) -> Error {
    Error::Matrix {
        status,
        errcode: body["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
        message: body["error"].as_str().unwrap_or_default().to_owned(),
    }
}

fn event_id_of(answer: &Value) -> Result<OwnedEventId, Error> {
    answer["event_id"]
        .as_str()
        .and_then(|e| e.try_into().ok())
        .ok_or_else(|| Error::Invalid("the homeserver answered no event_id".into()))
}

/// Percent-encodes a path segment or query value: everything but the unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{server_name, user_id};

    fn client() -> Client {
        let registration = Registration::generate(
            "echo",
            "http://127.0.0.1:1",
            "echobot",
            "echo_",
            server_name!("hs.example"),
        );
        Client::new(
            "http://127.0.0.1:1/",
            &registration,
            server_name!("hs.example"),
        )
        .unwrap()
    }

    #[test]
    fn encodes_ids_for_paths() {
        assert_eq!(encode("!room:hs.example"), "%21room%3Ahs.example");
        assert_eq!(encode("@a b/c"), "%40a%20b%2Fc");
        assert_eq!(encode("abc-._~"), "abc-._~");
    }

    #[test]
    fn acts_as_ghosts_but_not_as_the_bot() {
        let client = client();
        let ghost = client.ghost_id("echo_1").unwrap();
        assert_eq!(
            client.url("/p", &client.identity(Some(&ghost))),
            "http://127.0.0.1:1/p?user_id=%40echo_1%3Ahs.example"
        );
        assert_eq!(
            client.url("/p", &client.identity(Some(client.bot()))),
            "http://127.0.0.1:1/p"
        );
    }

    #[test]
    fn knows_its_own_users() {
        let client = client();
        assert!(client.is_bridge_user(user_id!("@echobot:hs.example")));
        assert!(client.is_bridge_user(user_id!("@echo_42:hs.example")));
        assert!(!client.is_bridge_user(user_id!("@staff:hs.example")));
        assert!(!client.is_bridge_user(user_id!("@echobot:other.example")));
    }

    #[test]
    fn transaction_ids_never_repeat() {
        let client = client();
        assert_ne!(client.next_txn_id(), client.next_txn_id());
    }
}
