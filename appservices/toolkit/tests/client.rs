//! The ghost client against a scripted homeserver on 127.0.0.1:0: what it asks, as whom, and
//! what it does with the answers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bridge_toolkit::client::Client;
use bridge_toolkit::registration::Registration;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{MilliSecondsSinceUnixEpoch, UInt, room_id, server_name};
use serde_json::{Value, json};

/// One request the homeserver saw.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    authorization: String,
    body: Value,
}

#[derive(Default)]
struct Homeserver {
    seen: Vec<Seen>,
    invited: HashSet<String>,
    sends: HashSet<String>,
}

type Shared = Arc<Mutex<Homeserver>>;

fn error(status: StatusCode, errcode: &str) -> Response {
    (
        status,
        axum::Json(json!({"errcode": errcode, "error": errcode})),
    )
        .into_response()
}

/// Registers anyone but `echo_taken`; lets `@echo_b` join only once invited; fails the first
/// attempt of every send with 502; fails `createRoom` with 502.
async fn answer(
    State(hs): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let mut hs = hs.lock().unwrap();
    hs.seen.push(seen.clone());
    let path = seen.path.as_str();
    if path == "/_matrix/client/v3/register" {
        if seen.body["username"] == "echo_taken" {
            return error(StatusCode::BAD_REQUEST, "M_USER_IN_USE");
        }
        return axum::Json(json!({"user_id": "@x:hs"})).into_response();
    }
    if path.starts_with("/_matrix/client/v3/join/") {
        let ghost = seen.query.contains("user_id=%40echo_b%3Ahs");
        if ghost && !hs.invited.contains("@echo_b:hs") {
            return error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
        }
        return axum::Json(json!({"room_id": "!r:hs"})).into_response();
    }
    if path.ends_with("/invite") {
        let invitee = seen.body["user_id"].as_str().unwrap_or_default().to_owned();
        hs.invited.insert(invitee);
        return axum::Json(json!({})).into_response();
    }
    if path.contains("/send/") {
        if hs.sends.insert(path.to_owned()) {
            return error(StatusCode::BAD_GATEWAY, "M_UNKNOWN");
        }
        return axum::Json(json!({"event_id": "$sent"})).into_response();
    }
    if path == "/_matrix/client/v3/createRoom" {
        return error(StatusCode::BAD_GATEWAY, "M_UNKNOWN");
    }
    error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED")
}

async fn start() -> (Client, Registration, Shared) {
    let hs = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(answer).with_state(hs.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let registration = Registration::generate(
        "echo",
        "http://127.0.0.1:1",
        "echobot",
        "echo_",
        server_name!("hs"),
    );
    let client = Client::new(&url, &registration, server_name!("hs")).unwrap();
    (client, registration, hs)
}

fn seen(hs: &Shared) -> Vec<Seen> {
    std::mem::take(&mut hs.lock().unwrap().seen)
}

#[tokio::test]
async fn ghosts_are_registered_once_and_a_taken_name_is_fine() {
    let (client, registration, hs) = start().await;
    let ghost = client.ensure_registered("echo_a").await.unwrap();
    assert_eq!(ghost.as_str(), "@echo_a:hs");
    client.ensure_registered("echo_a").await.unwrap();
    client.ensure_registered("echo_taken").await.unwrap();
    let requests = seen(&hs);
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        requests[0].body,
        json!({"type": "m.login.application_service", "username": "echo_a", "inhibit_login": true})
    );
    assert_eq!(
        requests[0].authorization,
        format!("Bearer {}", registration.as_token)
    );
}

#[tokio::test]
async fn a_ghost_refused_at_the_door_is_invited_by_the_bot() {
    let (client, _, hs) = start().await;
    let ghost = client.ghost_id("echo_b").unwrap();
    client
        .ensure_joined(&ghost, room_id!("!r:hs"))
        .await
        .unwrap();
    client
        .ensure_joined(&ghost, room_id!("!r:hs"))
        .await
        .unwrap();
    let requests = seen(&hs);
    let steps: Vec<(String, String)> = requests
        .iter()
        .map(|s| (s.path.clone(), s.query.clone()))
        .collect();
    assert_eq!(
        steps,
        [
            (
                "/_matrix/client/v3/join/%21r%3Ahs".to_owned(),
                "user_id=%40echo_b%3Ahs".to_owned()
            ),
            (
                "/_matrix/client/v3/rooms/%21r%3Ahs/invite".to_owned(),
                String::new()
            ),
            (
                "/_matrix/client/v3/join/%21r%3Ahs".to_owned(),
                "user_id=%40echo_b%3Ahs".to_owned()
            ),
        ]
    );
    assert_eq!(requests[1].body, json!({"user_id": "@echo_b:hs"}));
}

#[tokio::test]
async fn a_send_is_repeated_with_its_transaction_id_and_the_remote_time() {
    let (client, _, hs) = start().await;
    let ghost = client.ghost_id("echo_c").unwrap();
    let ts = MilliSecondsSinceUnixEpoch(UInt::from(1_234_567u32));
    let event = client
        .send_message(
            &ghost,
            room_id!("!r:hs"),
            &RoomMessageEventContent::text_plain("hi"),
            Some(ts),
        )
        .await
        .unwrap();
    assert_eq!(event.as_str(), "$sent");
    let requests = seen(&hs);
    assert_eq!(requests.len(), 2, "the 502 was retried once");
    assert_eq!(
        requests[0].path, requests[1].path,
        "with the same transaction id"
    );
    assert!(
        requests[0]
            .path
            .starts_with("/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/")
    );
    assert_eq!(requests[0].method, Method::PUT);
    assert_eq!(requests[0].query, "user_id=%40echo_c%3Ahs&ts=1234567");
    assert_eq!(requests[0].body["body"], "hi");
}

/// A bridge re-sending a remote message after a crash names the transaction itself, so both
/// runs' sends carry the same id (the homeserver then stores the event once).
#[tokio::test]
async fn a_send_may_carry_the_callers_transaction_id() {
    let (client, _, hs) = start().await;
    let ghost = client.ghost_id("echo_d").unwrap();
    let content = json!({"msgtype": "m.text", "body": "hi"});
    for _ in 0..2 {
        client
            .send_event_with_txn(
                &ghost,
                room_id!("!r:hs"),
                "m.room.message",
                &content,
                None,
                "wa.wamid.HBg=",
            )
            .await
            .unwrap();
    }
    let paths: Vec<String> = seen(&hs).into_iter().map(|r| r.path).collect();
    assert!(!paths.is_empty());
    assert!(
        paths
            .iter()
            .all(|p| p == "/_matrix/client/v3/rooms/%21r%3Ahs/send/m.room.message/wa.wamid.HBg%3D"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn a_lost_create_room_is_not_repeated() {
    let (client, _, hs) = start().await;
    let error = client
        .create_portal_room(&Default::default())
        .await
        .unwrap_err();
    assert_eq!(error.errcode(), Some("M_UNKNOWN"));
    assert_eq!(seen(&hs).len(), 1);
}
