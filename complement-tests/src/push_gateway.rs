//! A push gateway for stories about pushers: an HTTP server on loopback that accepts
//! `POST /_matrix/push/v1/notify`, parses each body with ruma's Push Gateway API request type (so a
//! wrongly shaped notification is caught), and records it. A story can make it answer 500, reject
//! push keys, or start it late on an address reserved earlier (a gateway that was down).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::post;
use ruma::api::IncomingRequestExt;
use ruma::api::push_gateway::send_event_notification::v1::Request as NotifyRequest;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::wait::wait_until;

/// The path every notification is posted to.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

#[derive(Default)]
struct Recorded {
    /// Every notify request that parsed, accepted or not.
    attempts: Vec<Value>,
    /// The notifications answered with 200, in arrival order.
    accepted: Vec<Value>,
    /// Requests that were not a well-formed notify request, described.
    malformed: Vec<String>,
    /// Answer 500 to this many more requests.
    fail_next: u32,
    /// Answer 500 to every request while set.
    failing: bool,
    /// Push keys answered as `rejected`.
    rejected: Vec<String>,
}

pub struct PushGateway {
    addr: SocketAddr,
    state: Arc<Mutex<Recorded>>,
    task: JoinHandle<()>,
}

impl PushGateway {
    /// A gateway on a free loopback port.
    pub async fn start() -> PushGateway {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the push gateway");
        PushGateway::serve(listener)
    }

    /// A free loopback address with nothing listening on it yet: a gateway that is down until
    /// [`PushGateway::start_on`] starts one there.
    pub async fn reserve_address() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("reserving a port");
        listener.local_addr().expect("a bound address")
    }

    /// The gateway URL for an address.
    pub fn url_of(addr: SocketAddr) -> String {
        format!("http://{addr}{NOTIFY_PATH}")
    }

    /// A gateway on the given address (one from [`PushGateway::reserve_address`]).
    pub async fn start_on(addr: SocketAddr) -> PushGateway {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding the push gateway to {addr}: {e}"));
        PushGateway::serve(listener)
    }

    fn serve(listener: TcpListener) -> PushGateway {
        let addr = listener.local_addr().expect("a bound address");
        let state = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route(NOTIFY_PATH, post(notify))
            .fallback(unexpected)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PushGateway { addr, state, task }
    }

    /// The URL a pusher sets as `data.url`.
    pub fn url(&self) -> String {
        PushGateway::url_of(self.addr)
    }

    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers 500 to the next `n` notifications.
    pub fn fail_next(&self, n: u32) {
        self.recorded().fail_next = n;
    }

    /// Answers 500 to every notification while `failing` holds.
    pub fn set_failing(&self, failing: bool) {
        self.recorded().failing = failing;
    }

    /// Answers every later notification for this push key with it in `rejected`.
    pub fn reject(&self, pushkey: &str) {
        self.recorded().rejected.push(pushkey.to_owned());
    }

    /// Every well-formed notify request received so far, accepted or not.
    pub fn attempts(&self) -> Vec<Value> {
        self.assert_well_formed();
        self.recorded().attempts.clone()
    }

    /// The notifications accepted so far, in arrival order.
    pub fn notifications(&self) -> Vec<Value> {
        self.assert_well_formed();
        self.recorded().accepted.clone()
    }

    /// Waits until `n` notifications were accepted, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let what = format!("the push gateway has accepted {n} notifications");
        wait_until(&what, Duration::from_secs(30), async || {
            self.notifications().len() >= n
        })
        .await;
        self.notifications()
    }

    /// Waits until `n` requests arrived, accepted or not.
    pub async fn wait_for_attempts(&self, n: usize) {
        let what = format!("the push gateway has received {n} requests");
        wait_until(&what, Duration::from_secs(30), async || {
            self.attempts().len() >= n
        })
        .await;
    }

    fn assert_well_formed(&self) {
        let malformed = self.recorded().malformed.clone();
        assert!(
            malformed.is_empty(),
            "the push gateway received malformed requests:\n{}",
            malformed.join("\n")
        );
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn notify(
    State(state): State<Arc<Mutex<Recorded>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(&body[..])
        .expect("a request from its own parts");
    let parsed = NotifyRequest::try_from_http_request(request, &[] as &[&str]);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut recorded = state.lock().unwrap_or_else(|e| e.into_inner());
    let notification = match parsed {
        Ok(request) => request.notification,
        Err(e) => {
            recorded
                .malformed
                .push(format!("{e}: {}", String::from_utf8_lossy(&body)));
            return (StatusCode::BAD_REQUEST, axum::Json(json!({})));
        }
    };
    let notification_json = json["notification"].clone();
    recorded.attempts.push(notification_json.clone());
    if recorded.failing || recorded.fail_next > 0 {
        recorded.fail_next = recorded.fail_next.saturating_sub(1);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "the gateway is failing"})),
        );
    }
    let rejected: Vec<String> = notification
        .devices
        .iter()
        .filter(|d| recorded.rejected.contains(&d.pushkey))
        .map(|d| d.pushkey.clone())
        .collect();
    recorded.accepted.push(notification_json);
    (StatusCode::OK, axum::Json(json!({ "rejected": rejected })))
}

async fn unexpected(
    State(state): State<Arc<Mutex<Recorded>>>,
    method: Method,
    uri: Uri,
) -> StatusCode {
    let mut recorded = state.lock().unwrap_or_else(|e| e.into_inner());
    recorded
        .malformed
        .push(format!("unexpected request {method} {uri}"));
    StatusCode::NOT_FOUND
}
