//! The test rig: a simulator on port 0 and a stand-in for the bridge's webhook endpoint.

// Each test file uses its own part of the rig.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use plexus_whatsapp::signature;
use plexus_whatsapp::simulator::{Config, Simulator};
use reqwest::Client;
use serde_json::{Value, json};

pub const CONTACT: &str = "16505551234";

/// The `X-Hub-Signature-256` header and the raw body of one webhook POST.
pub type Received = (Option<String>, Vec<u8>);

/// A stand-in for the bridge's webhook endpoint: answers the handshake when the token matches,
/// records every POST (signature header and raw body) and answers the scripted statuses first.
#[derive(Clone, Default)]
pub struct Receiver {
    pub received: Arc<Mutex<Vec<Received>>>,
    pub script: Arc<Mutex<Vec<u16>>>,
}

async fn receiver_get(Query(q): Query<Vec<(String, String)>>) -> (StatusCode, String) {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if get("hub.mode").as_deref() == Some("subscribe")
        && get("hub.verify_token").as_deref() == Some("verify-me")
    {
        (StatusCode::OK, get("hub.challenge").unwrap_or_default())
    } else {
        (StatusCode::FORBIDDEN, String::new())
    }
}

async fn receiver_post(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    r.received.lock().unwrap().push((signature, body.to_vec()));
    let mut script = r.script.lock().unwrap();
    if script.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::from_u16(script.remove(0)).unwrap()
    }
}

pub struct Fixture {
    pub sim: Simulator,
    pub http: Client,
    pub receiver: Receiver,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A rig whose simulator configuration is adjusted first.
    pub async fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/webhook", get(receiver_get).post(receiver_post))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut config = Config {
            access_token: "good-token".into(),
            app_secret: "the-app-secret".into(),
            verify_token: "verify-me".into(),
            webhook_url: Some(hook),
            retry_base: Duration::from_millis(20),
            max_attempts: 5,
            ..Config::default()
        };
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = Simulator::start(listener, config).await.unwrap();
        Self {
            sim,
            http: Client::new(),
            receiver,
        }
    }

    pub fn graph(&self, path: &str) -> String {
        format!("{}/{path}", self.sim.graph_url())
    }

    pub fn messages_url(&self) -> String {
        self.graph(&format!("{}/messages", self.sim.config().phone_number_id))
    }

    pub async fn send(&self, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.messages_url())
            .bearer_auth("good-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// `GET` a Graph API node (a media id, a group id) with the good token: status and body.
    pub async fn node(&self, id: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.graph(id))
            .bearer_auth("good-token")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}/_sim/{path}", self.sim.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "control {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// The contact writes a text, opening the window; answers the inbound message id.
    pub async fn contact_writes(&self, text: &str) -> String {
        let answer = self
            .control(
                reqwest::Method::POST,
                &format!("contacts/{CONTACT}/messages"),
                json!({"name": "Sheena", "type": "text", "text": {"body": text}}),
            )
            .await;
        answer["id"].as_str().unwrap().to_owned()
    }

    pub async fn upload(&self, bytes: &[u8], mime: &str, filename: &str) -> (u16, Value) {
        let mut body = Vec::new();
        body.extend_from_slice(b"--b0undary\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n");
        body.extend_from_slice(
            format!(
                "--b0undary\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\n{mime}\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(format!("--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n--b0undary--\r\n");
        let response = self
            .http
            .post(self.graph(&format!("{}/media", self.sim.config().phone_number_id)))
            .bearer_auth("good-token")
            .header("content-type", "multipart/form-data; boundary=b0undary")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Waits for the `n`th webhook (1-based) to be received; answers its parsed body.
    pub async fn webhook(&self, n: usize) -> Value {
        for _ in 0..200 {
            if let Some((signature, body)) =
                self.receiver.received.lock().unwrap().get(n - 1).cloned()
            {
                let signature = signature.expect("X-Hub-Signature-256 present");
                assert!(
                    signature::verify("the-app-secret", &body, &signature),
                    "valid signature"
                );
                return serde_json::from_slice(&body).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("webhook {n} never arrived");
    }
}

pub fn base(extra: Value) -> Value {
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": format!("+{CONTACT}")});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

pub fn error_code(body: &Value) -> u64 {
    assert_eq!(body["error"]["type"], "OAuthException", "{body}");
    assert!(body["error"]["fbtrace_id"].is_string(), "{body}");
    body["error"]["code"].as_u64().unwrap()
}
