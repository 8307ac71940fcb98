//! An application service for stories about bridges: an HTTP server on loopback that speaks the
//! homeserver → appservice side of the Application Service API. It checks `Authorization: Bearer
//! <hs_token>` on every request (403 `M_FORBIDDEN` otherwise), records transactions (a repeated
//! transaction id is answered 200 and not recorded twice), answers user and alias queries through
//! handlers a story sets (404 by default), answers pings, and serves third-party answers a story
//! sets. It writes its own registration file and starts Plexus with `appservice_registrations`
//! pointing at it.
//!
//! ```no_run
//! # async fn story() {
//! use complement_tests::TestAppservice;
//! let bridge = TestAppservice::builder("whatsapp").start().await;
//! let server = bridge.start_server().await;
//! let ghost = bridge.register_ghost("_whatsapp_4477").await;
//! let events = bridge.wait_for_events(1).await;
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{any, get, post, put};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::client::{Client, encode};
use crate::server::{Server, ServerBuilder};
use crate::wait::wait_until;

/// What a query handler returns: the HTTP status the appservice answers with (200 when it has
/// created the user or room, 404 when it does not know it).
pub type QueryFuture = Pin<Box<dyn Future<Output = u16> + Send>>;
type QueryHandler = Arc<dyn Fn(String) -> QueryFuture + Send + Sync>;

/// One request the homeserver made, as the appservice saw it.
#[derive(Clone, Debug)]
pub struct AppserviceRequest {
    pub method: String,
    /// The path, e.g. `/_matrix/app/v1/users/@_whatsapp_1:localhost` (percent-decoded).
    pub path: String,
    pub query: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub body: Value,
}

/// One accepted transaction.
#[derive(Clone, Debug)]
pub struct Transaction {
    pub txn_id: String,
    pub body: Value,
}

impl Transaction {
    pub fn events(&self) -> Vec<Value> {
        self.body["events"].as_array().cloned().unwrap_or_default()
    }

    /// The ephemeral events (`ephemeral`, or the unstable `de.sorunome.msc2409.ephemeral`).
    pub fn ephemeral(&self) -> Vec<Value> {
        let stable = self.body["ephemeral"].as_array();
        let unstable = self.body["de.sorunome.msc2409.ephemeral"].as_array();
        stable.or(unstable).cloned().unwrap_or_default()
    }
}

#[derive(Default)]
struct Recorded {
    /// Every request that passed the token check, in arrival order.
    requests: Vec<AppserviceRequest>,
    /// Requests refused for a missing or wrong `hs_token`.
    unauthorised: Vec<AppserviceRequest>,
    /// Accepted transactions, once each, in arrival order.
    transactions: Vec<Transaction>,
    seen_txn_ids: HashSet<String>,
    /// Every transaction attempt (accepted, repeated or failed), by id, in arrival order.
    transaction_attempts: Vec<String>,
    /// Answer 500 to this many more transactions.
    fail_next: u32,
    /// Answer 500 to every transaction while set.
    failing: bool,
    /// The status `/ping` answers with (200 by default), and how long it waits first.
    ping_status: u16,
    ping_delay: Duration,
    /// Third-party answers by path after `/_matrix/app/v1/thirdparty/` (with the query, if any).
    thirdparty: HashMap<String, Value>,
}

struct Shared {
    hs_token: String,
    recorded: Mutex<Recorded>,
    user_query: Mutex<Option<QueryHandler>>,
    alias_query: Mutex<Option<QueryHandler>>,
}

impl Shared {
    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The registration a [`TestAppservice`] is started with. Namespaces default to
/// `@_<id>_.*` (users) and `#_<id>_.*` (aliases), both exclusive, bot `_<id>_bot`.
#[derive(Clone, Debug)]
pub struct AppserviceBuilder {
    pub id: String,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
    /// `(regex, exclusive)` entries.
    pub users: Vec<(String, bool)>,
    pub aliases: Vec<(String, bool)>,
    pub rooms: Vec<(String, bool)>,
    pub rate_limited: Option<bool>,
    pub protocols: Vec<String>,
    pub receive_ephemeral: bool,
    pub device_masquerading: bool,
    /// Write `url: null` (no transactions, no queries).
    pub url_null: bool,
    /// Listen on this address (one from [`TestAppservice::reserve_address`]) instead of a free
    /// port; `None` with `down` set writes the URL but starts nothing.
    addr: Option<SocketAddr>,
    down: bool,
}

impl AppserviceBuilder {
    pub fn users(mut self, regex: &str, exclusive: bool) -> Self {
        self.users.push((regex.to_owned(), exclusive));
        self
    }

    /// Replaces the default user namespace.
    pub fn only_users(mut self, regex: &str, exclusive: bool) -> Self {
        self.users = vec![(regex.to_owned(), exclusive)];
        self
    }

    pub fn aliases(mut self, regex: &str, exclusive: bool) -> Self {
        self.aliases.push((regex.to_owned(), exclusive));
        self
    }

    pub fn rooms(mut self, regex: &str, exclusive: bool) -> Self {
        self.rooms.push((regex.to_owned(), exclusive));
        self
    }

    pub fn rate_limited(mut self, rate_limited: bool) -> Self {
        self.rate_limited = Some(rate_limited);
        self
    }

    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.to_owned());
        self
    }

    pub fn receive_ephemeral(mut self, on: bool) -> Self {
        self.receive_ephemeral = on;
        self
    }

    pub fn device_masquerading(mut self, on: bool) -> Self {
        self.device_masquerading = on;
        self
    }

    pub fn url_null(mut self) -> Self {
        self.url_null = true;
        self
    }

    /// Listens on `addr` (from [`TestAppservice::reserve_address`]).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Starts the appservice's HTTP server and writes its registration file.
    pub async fn start(self) -> TestAppservice {
        let listener = match self.addr {
            Some(addr) => TcpListener::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("binding the appservice to {addr}: {e}")),
            None => TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binding the appservice"),
        };
        let addr = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            hs_token: self.hs_token.clone(),
            recorded: Mutex::new(Recorded {
                ping_status: 200,
                ..Recorded::default()
            }),
            user_query: Mutex::new(None),
            alias_query: Mutex::new(None),
        });
        let app = Router::new()
            .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
            .route("/_matrix/app/v1/users/{user_id}", get(user_query))
            .route("/_matrix/app/v1/rooms/{alias}", get(alias_query))
            .route("/_matrix/app/v1/ping", post(ping))
            .route("/_matrix/app/v1/thirdparty/{*rest}", get(thirdparty))
            .fallback(any(unknown))
            .with_state(shared.clone());
        let task = if self.down {
            drop(listener);
            None
        } else {
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }))
        };
        let dir = tempfile::Builder::new()
            .prefix("plexus-appservice-")
            .tempdir()
            .expect("creating a directory for the registration");
        let appservice = TestAppservice {
            registration: self,
            addr,
            shared,
            task,
            dir,
            client: Mutex::new(None),
        };
        std::fs::write(
            appservice.registration_path(),
            appservice.registration_yaml(),
        )
        .expect("writing the registration file");
        appservice
    }
}

/// A running test appservice; its HTTP server stops when it is dropped.
pub struct TestAppservice {
    registration: AppserviceBuilder,
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    dir: TempDir,
    /// The as_token client of the server it was attached to.
    client: Mutex<Option<Client>>,
}

impl TestAppservice {
    /// A registration with the defaults for `id` (see [`AppserviceBuilder`]), to change before
    /// starting.
    pub fn builder(id: &str) -> AppserviceBuilder {
        AppserviceBuilder {
            id: id.to_owned(),
            as_token: format!("as-token-{id}"),
            hs_token: format!("hs-token-{id}"),
            sender_localpart: format!("_{id}_bot"),
            users: vec![(format!("@_{id}_.*"), true)],
            aliases: vec![(format!("#_{id}_.*"), true)],
            rooms: Vec::new(),
            rate_limited: Some(false),
            protocols: Vec::new(),
            receive_ephemeral: false,
            device_masquerading: false,
            url_null: false,
            addr: None,
            down: false,
        }
    }

    /// Starts an appservice with the defaults for `id`.
    pub async fn start(id: &str) -> TestAppservice {
        TestAppservice::builder(id).start().await
    }

    /// A free loopback address with nothing listening on it: start a builder with
    /// [`AppserviceBuilder::addr`] there later (an appservice that was down).
    pub async fn reserve_address() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("reserving a port");
        listener.local_addr().expect("a bound address")
    }

    /// A registration that points at `addr` with nothing listening there (yet).
    pub async fn start_down(builder: AppserviceBuilder, addr: SocketAddr) -> TestAppservice {
        let mut builder = builder.addr(addr);
        builder.down = true;
        builder.start().await
    }

    pub fn id(&self) -> &str {
        &self.registration.id
    }

    pub fn as_token(&self) -> &str {
        &self.registration.as_token
    }

    pub fn hs_token(&self) -> &str {
        &self.registration.hs_token
    }

    pub fn sender_localpart(&self) -> &str {
        &self.registration.sender_localpart
    }

    /// The URL in the registration, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registration file's text (YAML; JSON is YAML).
    pub fn registration_yaml(&self) -> String {
        let r = &self.registration;
        let namespaces = |entries: &[(String, bool)]| -> Value {
            entries
                .iter()
                .map(|(regex, exclusive)| json!({"regex": regex, "exclusive": exclusive}))
                .collect()
        };
        let mut registration = json!({
            "id": r.id,
            "url": if r.url_null { Value::Null } else { Value::String(self.url()) },
            "as_token": r.as_token,
            "hs_token": r.hs_token,
            "sender_localpart": r.sender_localpart,
            "namespaces": {
                "users": namespaces(&r.users),
                "aliases": namespaces(&r.aliases),
                "rooms": namespaces(&r.rooms),
            },
            "protocols": r.protocols,
            "receive_ephemeral": r.receive_ephemeral,
        });
        if let Some(rate_limited) = r.rate_limited {
            registration["rate_limited"] = json!(rate_limited);
        }
        if r.device_masquerading {
            registration["org.matrix.msc3202"] = json!(true);
        }
        serde_json::to_string_pretty(&registration).expect("JSON from a value")
    }

    /// Where the registration file is written.
    pub fn registration_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.yaml", self.registration.id))
    }

    /// Adds these appservices' registration files to a server's `appservice_registrations`.
    pub fn configure(builder: ServerBuilder, appservices: &[&TestAppservice]) -> ServerBuilder {
        let paths: Vec<String> = appservices
            .iter()
            .map(|a| a.registration_path().to_string_lossy().into_owned())
            .collect();
        builder.config("appservice_registrations", paths)
    }

    /// Starts a server with this appservice registered, and attaches to it.
    pub async fn start_server(&self) -> Server {
        let server = TestAppservice::configure(Server::builder(), &[self])
            .start()
            .await;
        self.attach(&server);
        server
    }

    /// Makes [`TestAppservice::client`] talk to `server`.
    pub fn attach(&self, server: &Server) {
        let client = server.client().with_token(&self.registration.as_token);
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
    }

    /// A client of the attached server authenticating with the `as_token` (acting as the bot,
    /// or as a user with [`masquerade`] paths).
    pub fn client(&self) -> Client {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("the appservice is not attached to a server (TestAppservice::attach)")
    }

    /// Registers `localpart` with `m.login.application_service` and `inhibit_login`, asserting
    /// success; returns the user id.
    pub async fn register_ghost(&self, localpart: &str) -> String {
        let reply = self
            .client()
            .post(
                "/_matrix/client/v3/register",
                json!({
                    "type": "m.login.application_service",
                    "username": localpart,
                    "inhibit_login": true,
                }),
            )
            .await;
        reply.ok()["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the registration answer has no user_id:\n{reply}"))
            .to_owned()
    }

    /// Answers `GET /_matrix/app/v1/users/{userId}` with `handler(user_id)`.
    pub fn on_user_query<F, Fut>(&self, handler: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = u16> + Send + 'static,
    {
        let handler: QueryHandler = Arc::new(move |id| Box::pin(handler(id)));
        *self
            .shared
            .user_query
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Answers `GET /_matrix/app/v1/rooms/{alias}` with `handler(alias)`.
    pub fn on_alias_query<F, Fut>(&self, handler: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = u16> + Send + 'static,
    {
        let handler: QueryHandler = Arc::new(move |alias| Box::pin(handler(alias)));
        *self
            .shared
            .alias_query
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Answers alias queries for aliases starting with `prefix` as a bridge does: its bot creates
    /// a public room with that alias and the answer is `createRoom`'s status; others are 404.
    pub fn create_rooms_for_aliases(&self, prefix: &str) {
        let (bot, prefix) = (self.client(), prefix.to_owned());
        self.on_alias_query(move |alias: String| {
            let (bot, known) = (bot.clone(), alias.starts_with(&prefix));
            async move {
                if !known {
                    return 404;
                }
                let localpart = alias
                    .trim_start_matches('#')
                    .split(':')
                    .next()
                    .unwrap_or("");
                bot.post(
                    "/_matrix/client/v3/createRoom",
                    json!({"preset": "public_chat", "room_alias_name": localpart}),
                )
                .await
                .status
            }
        });
    }

    /// Answers pings with `status` after `delay`.
    pub fn set_ping(&self, status: u16, delay: Duration) {
        let mut recorded = self.shared.recorded();
        recorded.ping_status = status;
        recorded.ping_delay = delay;
    }

    /// Answers `GET /_matrix/app/v1/thirdparty/<path>` (path with its query string, if the
    /// request has one, e.g. `location?alias=%23a%3Alocalhost`) with `body`.
    pub fn set_thirdparty(&self, path: &str, body: Value) {
        self.shared
            .recorded()
            .thirdparty
            .insert(path.to_owned(), body);
    }

    /// Answers 500 to the next `n` transactions.
    pub fn fail_next(&self, n: u32) {
        self.shared.recorded().fail_next = n;
    }

    /// Answers 500 to every transaction while `failing` holds.
    pub fn set_failing(&self, failing: bool) {
        self.shared.recorded().failing = failing;
    }

    /// Every request that passed the token check, in arrival order.
    pub fn requests(&self) -> Vec<AppserviceRequest> {
        self.shared.recorded().requests.clone()
    }

    /// Requests refused for a missing or wrong `hs_token`.
    pub fn unauthorised_requests(&self) -> Vec<AppserviceRequest> {
        self.shared.recorded().unauthorised.clone()
    }

    /// The accepted transactions, each once, in arrival order.
    pub fn transactions(&self) -> Vec<Transaction> {
        self.shared.recorded().transactions.clone()
    }

    /// The id of every transaction attempt (accepted, repeated or answered 500).
    pub fn transaction_attempts(&self) -> Vec<String> {
        self.shared.recorded().transaction_attempts.clone()
    }

    /// The events of the accepted transactions, in order.
    pub fn events(&self) -> Vec<Value> {
        self.transactions()
            .iter()
            .flat_map(|t| t.events())
            .collect()
    }

    /// The ephemeral events of the accepted transactions, in order.
    pub fn ephemeral(&self) -> Vec<Value> {
        self.transactions()
            .iter()
            .flat_map(|t| t.ephemeral())
            .collect()
    }

    /// Waits until the accepted transactions hold `n` events, and returns them all.
    pub async fn wait_for_events(&self, n: usize) -> Vec<Value> {
        let what = format!("the appservice {} has received {n} events", self.id());
        wait_until(&what, Duration::from_secs(60), async || {
            self.events().len() >= n
        })
        .await;
        self.events()
    }

    /// Waits until an accepted transaction holds an event for which `matches` holds.
    pub async fn wait_for_event(&self, mut matches: impl FnMut(&Value) -> bool) -> Value {
        let what = format!("the appservice {} has received the event", self.id());
        let mut found = None;
        wait_until(&what, Duration::from_secs(30), async || {
            found = self.events().into_iter().find(|e| matches(e));
            found.is_some()
        })
        .await;
        found.expect("found once the wait ended")
    }
}

impl Drop for TestAppservice {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A path for acting as `user_id` with the as_token: `path` with `user_id=` added to its query.
pub fn masquerade(path: &str, user_id: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}user_id={}", encode(user_id))
}

type Answer = (StatusCode, axum::Json<Value>);

fn answer(status: u16, body: Value) -> Answer {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body))
}

fn not_found() -> Answer {
    answer(
        404,
        json!({"errcode": "M_NOT_FOUND", "error": "not known here"}),
    )
}

/// Checks the bearer token and records the request; `Err` is the 403 answer.
fn admit(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Answer> {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = AppserviceRequest {
        method: method.to_string(),
        path: percent_decode(uri.path()),
        query: uri.query().map(str::to_owned),
        authorization: authorization.clone(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    };
    let expected = format!("Bearer {}", shared.hs_token);
    let mut recorded = shared.recorded();
    if authorization.as_deref() != Some(expected.as_str()) {
        recorded.unauthorised.push(request);
        return Err(answer(
            403,
            json!({"errcode": "M_FORBIDDEN", "error": "bad hs_token"}),
        ));
    }
    recorded.requests.push(request);
    Ok(())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn transaction(
    State(shared): State<Arc<Shared>>,
    Path(txn_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    if let Err(refused) = admit(&shared, &method, &uri, &headers, &body) {
        return refused;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return answer(400, json!({"errcode": "M_NOT_JSON", "error": "not JSON"}));
    };
    let mut recorded = shared.recorded();
    recorded.transaction_attempts.push(txn_id.clone());
    if recorded.failing || recorded.fail_next > 0 {
        recorded.fail_next = recorded.fail_next.saturating_sub(1);
        return answer(500, json!({"errcode": "M_UNKNOWN", "error": "failing"}));
    }
    if recorded.seen_txn_ids.insert(txn_id.clone()) {
        recorded
            .transactions
            .push(Transaction { txn_id, body: json });
    }
    answer(200, json!({}))
}

async fn user_query(
    State(shared): State<Arc<Shared>>,
    Path(user_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    if let Err(refused) = admit(&shared, &method, &uri, &headers, &[]) {
        return refused;
    }
    let handler = shared
        .user_query
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    ask(handler, user_id).await
}

async fn alias_query(
    State(shared): State<Arc<Shared>>,
    Path(alias): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    if let Err(refused) = admit(&shared, &method, &uri, &headers, &[]) {
        return refused;
    }
    let handler = shared
        .alias_query
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    ask(handler, alias).await
}

/// A user or alias query answered by the test's handler: 200 `{}` when it says 200, else 404.
async fn ask(handler: Option<QueryHandler>, id: String) -> Answer {
    match handler {
        Some(handler) if handler(id).await == 200 => answer(200, json!({})),
        _ => not_found(),
    }
}

async fn ping(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    if let Err(refused) = admit(&shared, &method, &uri, &headers, &body) {
        return refused;
    }
    let (status, delay) = {
        let recorded = shared.recorded();
        (recorded.ping_status, recorded.ping_delay)
    };
    tokio::time::sleep(delay).await;
    if status == 200 {
        answer(200, json!({}))
    } else {
        answer(
            status,
            json!({"errcode": "M_UNKNOWN", "error": "ping refused"}),
        )
    }
}

async fn thirdparty(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    if let Err(refused) = admit(&shared, &method, &uri, &headers, &[]) {
        return refused;
    }
    let recorded = shared.recorded();
    let with_query = match &query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.clone(),
    };
    match recorded
        .thirdparty
        .get(&with_query)
        .or_else(|| recorded.thirdparty.get(&rest))
    {
        Some(body) => answer(200, body.clone()),
        None => not_found(),
    }
}

async fn unknown(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    if let Err(refused) = admit(&shared, &method, &uri, &headers, &body) {
        return refused;
    }
    answer(
        404,
        json!({"errcode": "M_UNRECOGNIZED", "error": "unknown endpoint"}),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_keeps_plain_text() {
        assert_eq!(super::percent_decode("/a/%40b%3Ac"), "/a/@b:c");
        assert_eq!(super::percent_decode("/a%"), "/a%");
    }

    #[test]
    fn masquerade_appends_the_user() {
        assert_eq!(super::masquerade("/p", "@a:b"), "/p?user_id=%40a%3Ab");
        assert_eq!(
            super::masquerade("/p?ts=1", "@a:b"),
            "/p?ts=1&user_id=%40a%3Ab"
        );
    }
}
