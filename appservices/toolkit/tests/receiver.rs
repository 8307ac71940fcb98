//! The transaction receiver over real HTTP: a receiver on 127.0.0.1:0 driven with reqwest the
//! way a homeserver drives it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bridge_toolkit::store::Store;
use bridge_toolkit::{Bridge, EphemeralEvent, Error, MatrixEvent, receiver};
use ruma::{OwnedRoomAliasId, OwnedUserId};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const HS_TOKEN: &str = "hs-secret";

/// Records what it is handed; fails the event `$fail` as many times as `failures` says.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    ephemeral: Mutex<Vec<String>>,
    failures: Mutex<u32>,
}

impl Recorder {
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl Bridge for Recorder {
    async fn handle_event(&self, event: MatrixEvent) -> Result<(), Error> {
        if event.event_id.as_str() == "$fail" {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Error::bridge("remote network down"));
            }
        }
        self.events.lock().unwrap().push(event.event_id.to_string());
        Ok(())
    }

    async fn handle_ephemeral(&self, event: EphemeralEvent) -> Result<(), Error> {
        self.ephemeral.lock().unwrap().push(event.kind);
        Ok(())
    }

    async fn query_user(&self, user_id: OwnedUserId) -> Result<bool, Error> {
        Ok(user_id.localpart() == "echo_known")
    }

    async fn query_alias(&self, alias: OwnedRoomAliasId) -> Result<bool, Error> {
        Ok(alias.alias() == "echo_known")
    }
}

/// A running receiver; dropping `stop` shuts it down.
struct Running {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(bridge: Arc<Recorder>, store: Store) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let app = receiver::router(bridge, HS_TOKEN, store);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Running {
            url,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

fn event(id: &str) -> Value {
    json!({
        "event_id": id, "room_id": "!portal:hs", "sender": "@staff:hs",
        "type": "m.room.message", "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": id}
    })
}

async fn put_transaction(url: &str, txn: &str, events: &[&str]) -> (u16, Value) {
    let body = json!({"events": events.iter().map(|e| event(e)).collect::<Vec<_>>()});
    send(
        http()
            .put(format!("{url}/_matrix/app/v1/transactions/{txn}"))
            .bearer_auth(HS_TOKEN)
            .json(&body),
    )
    .await
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn store_at(path: &Path) -> Store {
    Store::open(&path.join("bridge.db")).unwrap()
}

#[tokio::test]
async fn the_hs_token_is_required_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(Arc::default(), store_at(dir.path())).await;
    let url = format!("{}/_matrix/app/v1/transactions/1", running.url);
    let http = http();

    let (status, body) = send(http.put(&url).json(&json!({"events": []}))).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED"))
    );

    let (status, body) = send(
        http.put(&url)
            .bearer_auth("wrong")
            .json(&json!({"events": []})),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    let (status, body) = send(
        http.put(&url)
            .bearer_auth(HS_TOKEN)
            .json(&json!({"events": []})),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));

    // The legacy query-string token and the legacy path still work.
    let legacy = format!("{}/transactions/2?access_token={HS_TOKEN}", running.url);
    let (status, _) = send(http.put(&legacy).json(&json!({"events": []}))).await;
    assert_eq!(status, 200);

    let (status, body) = send(http.get(format!("{}/_matrix/app/v1/nothing", running.url))).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_UNRECOGNIZED"))
    );

    let (status, body) = send(http.get(&url).bearer_auth(HS_TOKEN)).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (405, Some("M_UNRECOGNIZED"))
    );

    let (status, body) = send(
        http.post(format!("{}/_matrix/app/v1/ping", running.url))
            .bearer_auth(HS_TOKEN)
            .json(&json!({"transaction_id": "p1"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    running.stop().await;
}

#[tokio::test]
async fn events_reach_the_bridge_in_order_with_ephemeral_after() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Arc::new(Recorder::default());
    let running = Running::start(bridge.clone(), store_at(dir.path())).await;
    assert_eq!(
        put_transaction(&running.url, "1", &["$a", "$b"]).await.0,
        200
    );
    let body = json!({
        "events": [event("$c")],
        "ephemeral": [{"type": "m.typing", "room_id": "!portal:hs", "content": {"user_ids": []}}],
    });
    let (status, _) = send(
        http()
            .put(format!("{}/_matrix/app/v1/transactions/2", running.url))
            .bearer_auth(HS_TOKEN)
            .json(&body),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bridge.events(), ["$a", "$b", "$c"]);
    assert_eq!(*bridge.ephemeral.lock().unwrap(), ["m.typing"]);
    running.stop().await;
}

#[tokio::test]
async fn a_repeated_transaction_is_ignored_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(Recorder::default());
    let running = Running::start(first.clone(), store_at(dir.path())).await;
    assert_eq!(put_transaction(&running.url, "7", &["$a"]).await.0, 200);
    assert_eq!(put_transaction(&running.url, "7", &["$a"]).await.0, 200);
    assert_eq!(first.events(), ["$a"]);
    running.stop().await;

    // A new process with the same store file.
    let second = Arc::new(Recorder::default());
    let running = Running::start(second.clone(), store_at(dir.path())).await;
    assert_eq!(
        put_transaction(&running.url, "7", &["$a"]).await,
        (200, json!({}))
    );
    assert!(second.events().is_empty());
    assert_eq!(put_transaction(&running.url, "8", &["$b"]).await.0, 200);
    assert_eq!(second.events(), ["$b"]);
    running.stop().await;
}

#[tokio::test]
async fn a_failing_handler_gets_the_transaction_retried_and_handled_once() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Arc::new(Recorder {
        failures: Mutex::new(2),
        ..Recorder::default()
    });
    let running = Running::start(bridge.clone(), store_at(dir.path())).await;
    let events = ["$a", "$fail", "$b"];

    let (status, body) = put_transaction(&running.url, "1", &events).await;
    assert_eq!((status, body["errcode"].as_str()), (500, Some("M_UNKNOWN")));
    assert_eq!(bridge.events(), ["$a"]);
    assert_ne!(put_transaction(&running.url, "1", &events).await.0, 200);
    // The retry resumes where the handling stopped: `$a` is not handed over again.
    assert_eq!(put_transaction(&running.url, "1", &events).await.0, 200);
    assert_eq!(bridge.events(), ["$a", "$fail", "$b"]);
    assert_eq!(put_transaction(&running.url, "1", &events).await.0, 200);
    assert_eq!(bridge.events(), ["$a", "$fail", "$b"]);
    running.stop().await;
}

#[tokio::test]
async fn user_and_alias_queries_ask_the_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(Arc::default(), store_at(dir.path())).await;
    let http = http();
    let cases = [
        ("/_matrix/app/v1/users/%40echo_known%3Ahs", 200),
        ("/_matrix/app/v1/users/%40echo_other%3Ahs", 404),
        ("/_matrix/app/v1/rooms/%23echo_known%3Ahs", 200),
        ("/rooms/%23echo_other%3Ahs", 404),
        ("/_matrix/app/v1/users/not-a-user", 400),
    ];
    for (path, expected) in cases {
        let (status, _) = send(
            http.get(format!("{}{path}", running.url))
                .bearer_auth(HS_TOKEN),
        )
        .await;
        assert_eq!(status, expected, "{path}");
    }
    running.stop().await;
}
