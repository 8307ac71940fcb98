//! What the WhatsApp bridge stories share: the constants both sides are configured with, a raw
//! HTTP client, the running Plexus + simulator + bridge (`Setup`), and Meta-style signing.

// Each story file uses its own part of this module.
#![allow(dead_code)]

use std::time::Duration;

use complement_tests::{Server, User, Value, json, state_path, wait_until};
use plexus_whatsapp::bridge::{self, config::Config as BridgeConfig};
use plexus_whatsapp::simulator::{Config as SimConfig, Simulator};
use tokio::net::TcpListener;

pub const APP_SECRET: &str = "test-app-secret";
pub const ACCESS_TOKEN: &str = "EAAtesttoken";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const MARIA: &str = "447700900123";

/// The bridge's TOML for the simulator at `graph_url` (versioned) and the homeserver at
/// `homeserver`; `tail` ends the `[bridge]` section (the staff rules) and may add sections after
/// it.
pub fn bridge_config(
    graph_url: &str,
    homeserver: &str,
    registration: &std::path::Path,
    appservice: &str,
    webhooks: &str,
    database: &std::path::Path,
    tail: &str,
) -> String {
    let (base, version) = graph_url.rsplit_once('/').expect("a versioned Graph URL");
    format!(
        r#"
[whatsapp]
api_base_url = "{base}"
api_version = "{version}"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "{ACCESS_TOKEN}"
app_secret = "{APP_SECRET}"
verify_token = "{VERIFY_TOKEN}"
[homeserver]
url = "{homeserver}"
server_name = "localhost"
[bridge]
registration = "{registration}"
appservice_listen = "{appservice}"
webhook_listen = "{webhooks}"
database = "{database}"
{tail}
"#,
        registration = registration.display(),
        database = database.display(),
    )
}

/// Plain HTTP to the simulator's control API and the bridge's webhook endpoint.
pub struct Http(pub reqwest::Client);

impl Http {
    pub fn new() -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http(
            reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        )
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("the request is answered");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, url: &str) -> Value {
        let (status, body) = self.send(self.0.get(url)).await;
        assert_eq!(status, 200, "GET {url}: {body}");
        body
    }

    pub async fn post(&self, url: &str, body: Value) -> Value {
        let (status, answer) = self.send(self.0.post(url).json(&body)).await;
        assert_eq!(status, 200, "POST {url}: {answer}");
        answer
    }

    pub async fn put(&self, url: &str, body: Value) -> Value {
        let (status, answer) = self.send(self.0.put(url).json(&body)).await;
        assert_eq!(status, 200, "PUT {url}: {answer}");
        answer
    }
}

/// Plexus, the simulator and the bridge, with `alice` as the staff.
pub struct Setup {
    pub _server: Server,
    pub alice: User,
    pub sim: Simulator,
    pub webhook_url: String,
    pub http: Http,
    pub _bridge: tokio::task::JoinHandle<()>,
    pub _dir: tempfile::TempDir,
}

impl Setup {
    pub async fn start() -> Setup {
        Setup::start_with(r#"staff = ["@alice:localhost"]"#).await
    }

    /// Like [`Setup::start`], with `bridge_lines` (e.g. the `staff` and `invite` rules) as the
    /// end of the bridge's `[bridge]` section instead of `staff = ["@alice:localhost"]`.
    pub async fn start_with(bridge_lines: &str) -> Setup {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let appservice = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let webhooks = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let webhook_url = format!(
            "http://{}/webhook",
            webhooks.local_addr().expect("an address")
        );
        let sim = Simulator::start(
            TcpListener::bind("127.0.0.1:0").await.expect("a port"),
            SimConfig {
                phone_number_id: PHONE_NUMBER_ID.into(),
                access_token: ACCESS_TOKEN.into(),
                app_secret: APP_SECRET.into(),
                verify_token: VERIFY_TOKEN.into(),
                webhook_url: Some(webhook_url.clone()),
                retry_base: Duration::from_millis(200),
                max_attempts: 4,
                ..SimConfig::default()
            },
        )
        .await
        .expect("the simulator starts");
        let registration = dir.path().join("whatsapp.yaml");
        let config_text = bridge_config(
            &sim.graph_url(),
            "http://placeholder",
            &registration,
            &appservice.local_addr().expect("an address").to_string(),
            &webhooks.local_addr().expect("an address").to_string(),
            &dir.path().join("bridge.db"),
            bridge_lines,
        );
        let mut config = BridgeConfig::parse(&config_text).expect("the bridge config parses");
        let generated =
            bridge::generate_registration(&config, &registration).expect("registration written");

        let server = Server::builder()
            .config(
                "appservice_registrations",
                vec![registration.to_string_lossy().into_owned()],
            )
            .start()
            .await;
        assert_eq!(server.server_name(), "localhost");
        let alice = server.register_user("alice").await;
        config.homeserver.url = server.base_url();
        let bridge = tokio::spawn(async move {
            if let Err(e) = bridge::run(config, generated, appservice, webhooks).await {
                panic!("the bridge stopped: {e}");
            }
        });
        Setup {
            _server: server,
            alice,
            sim,
            webhook_url,
            http: Http::new(),
            _bridge: bridge,
            _dir: dir,
        }
    }

    pub fn server(&self) -> &Server {
        &self._server
    }

    /// A direct chat of Alice's with the bridge bot, once the bot joined and greeted her.
    pub async fn management_room(&self) -> String {
        let dm = self
            .alice
            .create_room(json!({"preset": "trusted_private_chat", "is_direct": true,
                                "invite": [BOT]}))
            .await;
        wait_until("the bot's greeting", Duration::from_secs(20), async || {
            self.messages(&dm).await.iter().any(|e| e["sender"] == BOT)
        })
        .await;
        dm
    }

    /// Alice says `text` in `room`: the body of the bot's first message after it (its answer,
    /// in a room where the bot posts nothing else, such as the management room).
    pub async fn command(&self, room: &str, text: &str) -> String {
        let sent = self.alice.send_message(room, text).await;
        let mut answer = None;
        wait_until(text, Duration::from_secs(30), async || {
            let events = self.messages(room).await;
            answer = events
                .iter()
                .skip_while(|e| e["event_id"] != sent.as_str())
                .find(|e| e["sender"] == BOT)
                .and_then(|e| e["content"]["body"].as_str())
                .map(str::to_owned);
            answer.is_some()
        })
        .await;
        answer.expect("the bot's answer")
    }

    pub fn sim(&self, path: &str) -> String {
        format!("{}/_sim{path}", self.sim.url())
    }

    /// The contact `wa_id` writes `body` (as `name`); answers the wamid.
    pub async fn contact_writes(&self, wa_id: &str, name: &str, body: &str) -> String {
        let answer = self
            .http
            .post(
                &self.sim(&format!("/contacts/{wa_id}/messages")),
                json!({"type": "text", "text": {"body": body}, "name": name}),
            )
            .await;
        answer["id"].as_str().expect("a wamid").to_owned()
    }

    pub async fn calls(&self) -> Vec<Value> {
        self.http
            .get(&self.sim("/calls"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Message sends the simulator received.
    pub async fn message_calls(&self) -> Vec<Value> {
        let path = format!("/v21.0/{PHONE_NUMBER_ID}/messages");
        self.calls()
            .await
            .into_iter()
            .filter(|c| c["method"] == "POST" && c["path"] == path)
            .collect()
    }

    /// The portal of `wa_id`, once Alice was invited to it (she joins it).
    pub async fn portal(&self, wa_id: &str) -> String {
        let mut found = None;
        wait_until("the portal invite", Duration::from_secs(30), async || {
            found = self.find_portal(wa_id).await;
            found.is_some()
        })
        .await;
        found.expect("the portal")
    }

    pub async fn find_portal(&self, wa_id: &str) -> Option<String> {
        let sync = self
            .alice
            .get("/_matrix/client/v3/sync?timeout=0")
            .await
            .ok();
        let invited: Vec<String> = sync["rooms"]["invite"]
            .as_object()
            .map(|rooms| rooms.keys().cloned().collect())
            .unwrap_or_default();
        for room in invited {
            self.alice.join(&room).await;
        }
        for room in self.alice.joined_rooms().await {
            let bridge_state = self
                .alice
                .get(&state_path(&room, "m.bridge", &format!("whatsapp/{wa_id}")))
                .await;
            if bridge_state.status == 200 && bridge_state.body["channel"]["id"] == wa_id {
                return Some(room);
            }
        }
        None
    }

    /// The room's `m.room.message` events, oldest first.
    pub async fn messages(&self, room: &str) -> Vec<Value> {
        let page = self.alice.messages(room, "b", None, 50).await;
        let mut events: Vec<Value> = page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.message")
            .cloned()
            .collect();
        events.reverse();
        events
    }
}

/// Message kinds: what a contact sends beyond text, media both ways, the whole timeline.
impl Setup {
    /// The contact `wa_id` sends `message` (a message object, see `POST /_sim/contacts/…`);
    /// answers the wamid.
    pub async fn contact_sends(&self, wa_id: &str, message: Value) -> String {
        let answer = self
            .http
            .post(&self.sim(&format!("/contacts/{wa_id}/messages")), message)
            .await;
        answer["id"].as_str().expect("a wamid").to_owned()
    }

    /// Media a contact is about to send (`POST /_sim/media`); answers its media id.
    pub async fn contact_media(&self, bytes: &[u8], mime_type: &str, filename: &str) -> String {
        let (status, media) = self
            .http
            .send(
                self.http
                    .0
                    .post(self.sim(&format!("/media?filename={filename}")))
                    .header("content-type", mime_type)
                    .body(bytes.to_vec()),
            )
            .await;
        assert_eq!(status, 200, "{media}");
        media["id"].as_str().expect("a media id").to_owned()
    }

    /// The bytes the bridge uploaded to the Cloud API as `media_id`.
    pub async fn sim_media(&self, media_id: &str) -> Vec<u8> {
        let response = self
            .http
            .0
            .get(self.sim(&format!("/media/{media_id}")))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.expect("bytes").to_vec()
    }

    /// Alice uploads `bytes` to the Matrix media repository; answers the `mxc://` URI.
    pub async fn alice_uploads(&self, bytes: &[u8], mime_type: &str, filename: &str) -> String {
        let url = format!(
            "{}/_matrix/media/v3/upload?filename={filename}",
            self.alice.client().base_url()
        );
        let (status, answer) = self
            .http
            .send(
                self.http
                    .0
                    .post(url)
                    .bearer_auth(&self.alice.access_token)
                    .header("content-type", mime_type)
                    .body(bytes.to_vec()),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["content_uri"]
            .as_str()
            .expect("an mxc URI")
            .to_owned()
    }

    /// The exact bytes of an `mxc://` URI, downloaded as Alice.
    pub async fn matrix_media(&self, mxc: &str) -> Vec<u8> {
        let url = format!(
            "{}/_matrix/client/v1/media/download/{}",
            self.alice.client().base_url(),
            mxc.trim_start_matches("mxc://")
        );
        let response = self
            .http
            .0
            .get(url)
            .bearer_auth(&self.alice.access_token)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.expect("bytes").to_vec()
    }

    /// Every event of the room's timeline (latest 100), oldest first.
    pub async fn timeline(&self, room: &str) -> Vec<Value> {
        let page = self.alice.messages(room, "b", None, 100).await;
        let mut events: Vec<Value> = page["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }

    /// The first `m.room.message` of `room` matching `matches`, once it is there.
    pub async fn wait_for_message(
        &self,
        room: &str,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut found = None;
        wait_until(what, Duration::from_secs(30), async || {
            found = self.messages(room).await.into_iter().find(|e| matches(e));
            found.is_some()
        })
        .await;
        found.expect("the message")
    }
}

pub const BOT: &str = "@whatsappbot:localhost";

pub fn ghost_of(wa_id: &str) -> String {
    format!("@whatsapp_{wa_id}:localhost")
}

/// `sha256=<hex>` of `body` with the app secret, as Meta signs.
pub fn sign(body: &[u8]) -> String {
    plexus_whatsapp::signature::sign(APP_SECRET, body)
}
