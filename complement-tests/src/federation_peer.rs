//! A fake homeserver that runs inside the test process, to talk federation with a real Plexus
//! server from the other side: `FederationPeer::start()` makes up a server name
//! (`peer-<hex>.test`) and an ed25519 key, and serves HTTPS on a loopback port with a self-signed
//! certificate.
//!
//! What it serves: `GET /_matrix/key/v2/server` (its key, self-signed, valid for a day), and
//! whatever a test registers with [`FederationPeer::handle`] (a method and a path pattern whose
//! `{placeholders}` match one segment each); anything else is 404 `M_UNRECOGNIZED`. Every request
//! it receives is recorded ([`FederationPeer::received`]), with its `X-Matrix` header, which
//! [`PeerRequest::verify`] checks against the sending server's key.
//!
//! What it sends: [`FederationPeer::client`] signs requests to a Plexus server's federation
//! listener as the peer (`X-Matrix` over the canonical JSON of method, URI, origin, destination
//! and content). [`FederationPeer::server`] is the builder of a Plexus server that can reach the
//! peer: its name in `[federation.resolve]` and certificate checks off.
//!
//! PDUs: [`FederationPeer::sign_pdu`] hashes and signs an event as the peer and computes its
//! event id (the reference hash, room versions 10 to 12); [`verify_pdu`] checks a PDU's hash
//! and signature with a server's published key; [`pdu_event_id`] computes the id of any PDU.
//!
//! ```no_run
//! # async fn story() {
//! use complement_tests::{FederationPeer, json};
//! let peer = FederationPeer::start().await;
//! let server = peer.server("hs1.test").start().await;
//! peer.handle("PUT", "/_matrix/federation/v1/send/{txnId}", |_| (200, json!({"pdus": {}})));
//! let version = peer.client(&server).get("/_matrix/federation/v1/version").await.ok();
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap, Verified};
use ruma::{CanonicalJsonObject, RoomVersionId};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::client::Client;
use crate::config::Toml;
use crate::reply::Reply;
use crate::server::{Server, ServerBuilder};
use crate::wait::{now_ms, wait_until};

/// The version part of the peer's key id (`ed25519:peer`).
const KEY_VERSION: &str = "peer";
/// How long a TLS handshake with the peer may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the peer's published key is valid.
const KEY_VALIDITY_MS: u64 = 24 * 60 * 60 * 1000;

/// What a handler answers: a status and a JSON body.
pub type PeerReply = (u16, Value);
type Handler = Arc<dyn Fn(&PeerRequest) -> PeerReply + Send + Sync>;

/// A request the peer received.
#[derive(Clone, Debug)]
pub struct PeerRequest {
    pub method: String,
    /// The path and query as sent (what an `X-Matrix` signature covers).
    pub uri: String,
    pub path: String,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

impl PeerRequest {
    /// The `origin` named in the `X-Matrix` header.
    pub fn origin(&self) -> Option<String> {
        x_matrix_params(self.authorization.as_deref()?).remove("origin")
    }

    /// Checks the `X-Matrix` signature: made by the server it names with the key `public_key`
    /// (unpadded base64), addressed to `destination`, over this request.
    pub fn verify(&self, destination: &str, public_key: &str) -> Result<(), String> {
        let header = self
            .authorization
            .as_deref()
            .ok_or("no Authorization header")?;
        let params = x_matrix_params(header);
        let get = |name: &str| {
            params
                .get(name)
                .cloned()
                .ok_or_else(|| format!("the X-Matrix header has no {name}: {header}"))
        };
        let (origin, key, sig) = (get("origin")?, get("key")?, get("sig")?);
        if get("destination")? != destination {
            return Err(format!(
                "the request is addressed to {}",
                get("destination")?
            ));
        }
        let mut object = json!({
            "method": self.method,
            "uri": self.uri,
            "origin": origin,
            "destination": destination,
            "signatures": {origin.as_str(): {key.as_str(): sig}},
        });
        if !self.body.is_null() {
            object["content"] = self.body.clone();
        }
        let keys = public_key_map(&origin, &key, public_key)?;
        ruma::signatures::verify_json(&keys, &canonical_object(&object)?)
            .map_err(|e| format!("the X-Matrix signature does not verify: {e}"))
    }
}

/// The parameters of an `X-Matrix` header (values with or without quotes).
fn x_matrix_params(header: &str) -> BTreeMap<String, String> {
    let Some(params) = header.strip_prefix("X-Matrix ") else {
        return BTreeMap::new();
    };
    params
        .split(',')
        .filter_map(|param| param.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

struct Shared {
    handlers: Vec<(String, String, Handler)>,
    received: Vec<PeerRequest>,
}

/// The peer's identity: its name and signing key.
struct Identity {
    server_name: String,
    key: Ed25519KeyPair,
}

impl Identity {
    fn key_id(&self) -> String {
        format!("ed25519:{}", self.key.version())
    }

    fn public_key(&self) -> String {
        STANDARD_NO_PAD.encode(self.key.public_key())
    }

    /// Adds the peer's signature to a JSON object.
    fn sign_json(&self, value: &Value) -> Value {
        let mut object = canonical_object(value).expect("signing a JSON object");
        ruma::signatures::sign_json(&self.server_name, &self.key, &mut object)
            .expect("signing canonical JSON");
        serde_json::to_value(object).expect("canonical JSON is JSON")
    }
}

/// A fake homeserver; see the module docs.
pub struct FederationPeer {
    identity: Arc<Identity>,
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl FederationPeer {
    /// A peer with a new name and key, serving HTTPS on a free loopback port.
    pub async fn start() -> FederationPeer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let der = Ed25519KeyPair::generate();
        let key = Ed25519KeyPair::from_der(&der, KEY_VERSION.into()).expect("a generated key");
        let server_name = format!("peer-{}.test", hex::encode(&key.public_key()[..4]));
        let identity = Arc::new(Identity { server_name, key });

        let certified = rcgen::generate_simple_self_signed(vec![identity.server_name.clone()])
            .expect("generating a self-signed certificate");
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![certified.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(
                    certified.signing_key.serialize_der().into(),
                ),
            )
            .expect("a TLS configuration for the peer");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the peer's port");
        let addr = listener.local_addr().expect("a bound address");

        let shared = Arc::new(Mutex::new(Shared {
            handlers: Vec::new(),
            received: Vec::new(),
        }));
        let keys = identity.clone();
        let key_handler: Handler = Arc::new(move |_| (200, server_keys(&keys)));
        shared.lock().expect("a new lock").handlers.push((
            "GET".into(),
            "/_matrix/key/v2/server".into(),
            key_handler,
        ));
        let app = Router::new().fallback(dispatch).with_state(shared.clone());
        let listener = TlsIncoming {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FederationPeer {
            identity,
            addr,
            shared,
            task,
        }
    }

    pub fn server_name(&self) -> &str {
        &self.identity.server_name
    }

    /// `ed25519:peer`.
    pub fn key_id(&self) -> String {
        self.identity.key_id()
    }

    /// The public key, unpadded base64, as the peer publishes it.
    pub fn public_key(&self) -> String {
        self.identity.public_key()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A user id on the peer.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.identity.server_name)
    }

    /// The `[federation.resolve]` entry that sends a server's requests for the peer here.
    pub fn resolve_entry(&self) -> (String, Toml) {
        (
            self.identity.server_name.clone(),
            self.addr.to_string().into(),
        )
    }

    /// The builder of a Plexus server named `name` that federates with this peer: a federation
    /// listener on port 0, the peer in `[federation.resolve]`, certificate checks off.
    pub fn server(&self, name: &str) -> ServerBuilder {
        Server::builder()
            .server_name(name)
            .config("federation.listen", vec!["127.0.0.1:0"])
            .config("federation.verify_certificates", false)
            .config("federation.resolve", Toml::table([self.resolve_entry()]))
    }

    /// Answers `method` requests whose path matches `pattern` (`{name}` matches one segment)
    /// with `handler`. A later registration wins over an earlier one for the same request.
    pub fn handle(
        &self,
        method: &str,
        pattern: &str,
        handler: impl Fn(&PeerRequest) -> PeerReply + Send + Sync + 'static,
    ) {
        self.shared().handlers.push((
            method.to_ascii_uppercase(),
            pattern.to_owned(),
            Arc::new(handler),
        ));
    }

    /// Every request received so far, in arrival order (key fetches included).
    pub fn received(&self) -> Vec<PeerRequest> {
        self.shared().received.clone()
    }

    /// Waits until a request for a path starting with `prefix` arrived, and returns the first.
    pub async fn wait_for_request(&self, method: &str, prefix: &str) -> PeerRequest {
        let find = || {
            self.received()
                .into_iter()
                .find(|r| r.method == method && r.path.starts_with(prefix))
        };
        let what = format!("{} received {method} {prefix}…", self.server_name());
        wait_until(&what, Duration::from_secs(30), async || find().is_some()).await;
        find().expect("the request that was waited for")
    }

    /// A client that sends requests signed by the peer to `server`'s federation listener.
    pub fn client(&self, server: &Server) -> PeerClient {
        PeerClient {
            http: server.federation_client(),
            destination: server.server_name().to_owned(),
            identity: self.identity.clone(),
        }
    }

    /// The `Authorization` header the peer sends for `method uri` (path and query) to
    /// `destination`, with the JSON body `content` if any.
    pub fn authorization(
        &self,
        method: &str,
        uri: &str,
        destination: &str,
        content: Option<&Value>,
    ) -> String {
        authorization(&self.identity, method, uri, destination, content)
    }

    /// Adds the peer's signature to a JSON object (key responses, invites, …).
    pub fn sign_json(&self, value: &Value) -> Value {
        self.identity.sign_json(value)
    }

    /// Hashes and signs an event as the peer for a room of `room_version` ("10", "11", "12"),
    /// filling `origin_server_ts` when missing, and returns it with its event id. The event must
    /// hold everything else a PDU needs (`room_id`, `sender`, `type`, `content`, `depth`,
    /// `prev_events`, `auth_events`, `state_key` for state).
    pub fn sign_pdu(&self, room_version: &str, event: Value) -> PeerPdu {
        let rules = rules(room_version);
        let mut event = event;
        if event.get("origin_server_ts").is_none() {
            event["origin_server_ts"] = json!(now_ms());
        }
        let mut object = canonical_object(&event).expect("the event is a JSON object");
        ruma::signatures::hash_and_sign_event(
            &self.identity.server_name,
            &self.identity.key,
            &mut object,
            &rules.redaction,
        )
        .expect("hashing and signing the event");
        let hash = ruma::signatures::reference_hash(&object, &rules).expect("a reference hash");
        PeerPdu {
            event_id: format!("${hash}"),
            json: serde_json::to_value(object).expect("canonical JSON is JSON"),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FederationPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A PDU signed by the peer, and its event id.
#[derive(Clone, Debug)]
pub struct PeerPdu {
    pub event_id: String,
    pub json: Value,
}

/// Requests from the peer to one Plexus server.
pub struct PeerClient {
    http: Client,
    destination: String,
    identity: Arc<Identity>,
}

impl PeerClient {
    /// A signed request; `uri` is the path and query, exactly as signed.
    pub async fn request(&self, method: &str, uri: &str, body: Option<&Value>) -> Reply {
        let authorization = authorization(&self.identity, method, uri, &self.destination, body);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self
            .http
            .request(method, uri)
            .header("Authorization", &authorization);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.request("GET", uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.request("POST", uri, Some(&body)).await
    }

    pub async fn put(&self, uri: &str, body: Value) -> Reply {
        self.request("PUT", uri, Some(&body)).await
    }

    /// The same request without any signature.
    pub async fn get_unsigned(&self, uri: &str) -> Reply {
        self.http.get(uri).await
    }

    /// The server's published signing key: its id and public key (unpadded base64).
    pub async fn server_key(&self) -> (String, String) {
        let keys = self.http.get("/_matrix/key/v2/server").await.ok();
        let (key_id, key) = keys["verify_keys"]
            .as_object()
            .and_then(|keys| keys.iter().next())
            .unwrap_or_else(|| panic!("the server publishes no key: {keys}"));
        let public_key = key["key"].as_str().expect("a key is a string").to_owned();
        (key_id.clone(), public_key)
    }
}

fn authorization(
    identity: &Identity,
    method: &str,
    uri: &str,
    destination: &str,
    content: Option<&Value>,
) -> String {
    let mut object = json!({
        "method": method,
        "uri": uri,
        "origin": identity.server_name,
        "destination": destination,
    });
    if let Some(content) = content {
        object["content"] = content.clone();
    }
    let signed = identity.sign_json(&object);
    let key_id = identity.key_id();
    let sig = signed["signatures"][&identity.server_name][&key_id]
        .as_str()
        .expect("the object was signed");
    format!(
        "X-Matrix origin=\"{}\",destination=\"{destination}\",key=\"{key_id}\",sig=\"{sig}\"",
        identity.server_name
    )
}

/// The peer's `/_matrix/key/v2/server` answer, signed by itself.
fn server_keys(identity: &Identity) -> Value {
    identity.sign_json(&json!({
        "server_name": identity.server_name,
        "valid_until_ts": now_ms() + KEY_VALIDITY_MS,
        "verify_keys": {identity.key_id(): {"key": identity.public_key()}},
        "old_verify_keys": {},
    }))
}

/// Records a request and answers it with the newest matching handler.
async fn dispatch(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let request = PeerRequest {
        method: method.to_string(),
        uri: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        path: uri.path().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let handler = {
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.received.push(request.clone());
        shared
            .handlers
            .iter()
            .rev()
            .find(|(m, pattern, _)| *m == request.method && path_matches(pattern, &request.path))
            .map(|(_, _, handler)| handler.clone())
    };
    let (status, body) = match handler {
        Some(handler) => handler(&request),
        None => (
            404,
            json!({"errcode": "M_UNRECOGNIZED", "error": "the test peer does not serve this"}),
        ),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body))
}

/// Whether `path` matches `pattern`, where a `{placeholder}` segment matches any one segment.
fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| (p.starts_with('{') && p.ends_with('}')) || p == s)
}

/// A TLS listener for `axum::serve`; handshakes run one at a time, which is plenty for a test.
struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

fn rules(room_version: &str) -> ruma::room_version_rules::RoomVersionRules {
    RoomVersionId::try_from(room_version)
        .ok()
        .and_then(|v| v.rules())
        .unwrap_or_else(|| panic!("room version {room_version:?} is not known"))
}

fn canonical_object(value: &Value) -> Result<CanonicalJsonObject, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("not canonical JSON: {e}"))
}

fn public_key_map(server: &str, key_id: &str, public_key: &str) -> Result<PublicKeyMap, String> {
    let key = Base64::parse(public_key).map_err(|e| format!("the key is not base64: {e}"))?;
    Ok(BTreeMap::from([(
        server.to_owned(),
        BTreeMap::from([(key_id.to_owned(), key)]),
    )]))
}

/// The event id of a PDU of a room of `room_version`: `$` and its reference hash.
pub fn pdu_event_id(pdu: &Value, room_version: &str) -> String {
    let object = canonical_object(pdu).expect("a PDU is a JSON object");
    let hash =
        ruma::signatures::reference_hash(&object, &rules(room_version)).expect("a reference hash");
    format!("${hash}")
}

/// Checks that a PDU is signed by `server` with `key_id`/`public_key` (unpadded base64) and that
/// its content hash matches (so it was not altered, nor redacted).
pub fn verify_pdu(
    pdu: &Value,
    room_version: &str,
    server: &str,
    key_id: &str,
    public_key: &str,
) -> Result<(), String> {
    let keys = public_key_map(server, key_id, public_key)?;
    let object = canonical_object(pdu)?;
    match ruma::signatures::verify_event(&keys, &object, &rules(room_version)) {
        Ok(Verified::All) => Ok(()),
        Ok(Verified::Signatures) => Err("the signature holds but the content hash does not".into()),
        Err(e) => Err(format!("the PDU does not verify: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        let pattern = "/_matrix/federation/v1/send/{txnId}";
        assert!(path_matches(pattern, "/_matrix/federation/v1/send/abc"));
        assert!(!path_matches(
            pattern,
            "/_matrix/federation/v1/send/abc/def"
        ));
        assert!(!path_matches(pattern, "/_matrix/federation/v1/sent/abc"));
        assert!(path_matches("/a/b", "/a/b"));
    }

    #[test]
    fn x_matrix_parameters_are_read_with_or_without_quotes() {
        let params = x_matrix_params(
            r#"X-Matrix origin="a.test",destination=b.test,key="ed25519:1",sig="xyz""#,
        );
        assert_eq!(params["origin"], "a.test");
        assert_eq!(params["destination"], "b.test");
        assert_eq!(params["key"], "ed25519:1");
        assert_eq!(params["sig"], "xyz");
        assert!(x_matrix_params("Bearer abc").is_empty());
    }

    #[tokio::test]
    async fn signed_pdus_and_requests_verify_with_the_published_key() {
        let peer = FederationPeer::start().await;
        let event = json!({
            "room_id": "!r:peer.test",
            "sender": peer.user_id("alice"),
            "type": "m.room.message",
            "content": {"body": "hi", "msgtype": "m.text"},
            "depth": 3,
            "prev_events": [],
            "auth_events": [],
        });
        for version in ["10", "11", "12"] {
            let pdu = peer.sign_pdu(version, event.clone());
            assert_eq!(pdu_event_id(&pdu.json, version), pdu.event_id);
            verify_pdu(
                &pdu.json,
                version,
                peer.server_name(),
                &peer.key_id(),
                &peer.public_key(),
            )
            .unwrap();
            let mut altered = pdu.json.clone();
            altered["content"]["body"] = json!("changed");
            assert!(
                verify_pdu(
                    &altered,
                    version,
                    peer.server_name(),
                    &peer.key_id(),
                    &peer.public_key()
                )
                .is_err()
            );
        }

        let body = json!({"a": 1});
        let request = PeerRequest {
            method: "PUT".into(),
            uri: "/x?y=1".into(),
            path: "/x".into(),
            body: body.clone(),
            authorization: Some(peer.authorization("PUT", "/x?y=1", "hs.test", Some(&body))),
        };
        assert_eq!(request.origin().as_deref(), Some(peer.server_name()));
        request.verify("hs.test", &peer.public_key()).unwrap();
        assert!(request.verify("other.test", &peer.public_key()).is_err());
        let tampered = PeerRequest {
            body: json!({"a": 2}),
            ..request
        };
        assert!(tampered.verify("hs.test", &peer.public_key()).is_err());
    }

    #[tokio::test]
    async fn the_peer_serves_its_keys_and_registered_handlers_over_https() {
        let peer = FederationPeer::start().await;
        peer.handle("GET", "/hello/{name}", |request| {
            (200, json!({"path": request.path}))
        });
        let http = crate::federation::federation_http_client();
        let base = format!("https://{}", peer.addr());
        let keys: Value = http
            .get(format!("{base}/_matrix/key/v2/server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(keys["server_name"], peer.server_name());
        assert!(keys["valid_until_ts"].as_u64().unwrap() > now_ms() + 3_600_000);
        let public_key = keys["verify_keys"][peer.key_id()]["key"].as_str().unwrap();
        assert_eq!(public_key, peer.public_key());
        crate::federation::verify_signature(&keys, peer.server_name(), &peer.key_id(), public_key)
            .unwrap();

        let hello = http
            .get(format!("{base}/hello/world"))
            .send()
            .await
            .unwrap();
        assert_eq!(hello.status(), 200);
        let missing = http.get(format!("{base}/nothing")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let paths: Vec<String> = peer.received().into_iter().map(|r| r.path).collect();
        assert_eq!(
            paths,
            ["/_matrix/key/v2/server", "/hello/world", "/nothing"]
        );
    }
}
