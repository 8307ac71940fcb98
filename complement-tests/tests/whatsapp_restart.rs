//! The WhatsApp bridge as a process that can die: the real `whatsapp-bridge` binary between a
//! real Plexus and the Cloud API simulator, killed with SIGKILL in the middle of a conversation
//! and started again, and throttled by the Cloud API. Nothing may be lost or duplicated.
//!
//! The bridge binary is `target/<profile>/whatsapp-bridge` (built by `cargo test --workspace`,
//! or `cargo build -p plexus-whatsapp`), or `$WHATSAPP_BRIDGE_BIN`.

#[path = "whatsapp_bridge/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use complement_tests::{Server, User, Value, json, state_path, wait_until};
use plexus_whatsapp::bridge::{self, config::Config as BridgeConfig};
use plexus_whatsapp::simulator::{Config as SimConfig, Simulator};
use support::{
    ACCESS_TOKEN, APP_SECRET, Http, MARIA, PHONE_NUMBER_ID, VERIFY_TOKEN, bridge_config, ghost_of,
};
use tokio::process::{Child, Command};

/// How long a message sent while the bridge was down may wait for its status before the bridge
/// calls it in doubt.
const IN_DOUBT_GRACE_SECS: u64 = 5;
/// The bridge's retry policy in these stories: four calls, 50 ms, then 100, then 200.
const ATTEMPTS: usize = 4;

/// Plexus, the simulator, and the bridge as a child process that can be killed and restarted.
struct Harness {
    _server: Server,
    alice: User,
    sim: Simulator,
    http: Http,
    config: PathBuf,
    webhook_url: String,
    bridge: Option<Child>,
    runs: usize,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let appservice = free_address();
        let webhooks = free_address();
        let webhook_url = format!("http://{webhooks}/webhook");
        // Webhooks refused while the bridge is down are retried for long enough to outlive it.
        let sim = Simulator::start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port"),
            SimConfig {
                phone_number_id: PHONE_NUMBER_ID.into(),
                access_token: ACCESS_TOKEN.into(),
                app_secret: APP_SECRET.into(),
                verify_token: VERIFY_TOKEN.into(),
                webhook_url: Some(webhook_url.clone()),
                retry_base: Duration::from_millis(100),
                max_attempts: 12,
                auto_statuses: true,
                ..SimConfig::default()
            },
        )
        .await
        .expect("the simulator starts");
        let registration = dir.path().join("whatsapp.yaml");
        let config_text = |homeserver: &str| {
            bridge_config(
                &sim.graph_url(),
                homeserver,
                &registration,
                &appservice.to_string(),
                &webhooks.to_string(),
                &dir.path().join("bridge.db"),
                &format!(
                    r#"staff = ["@alice:localhost"]
[delivery]
attempts = {ATTEMPTS}
backoff_base_ms = 50
backoff_max_ms = 200
in_doubt_grace_secs = {IN_DOUBT_GRACE_SECS}"#
                ),
            )
        };
        let config = BridgeConfig::parse(&config_text("http://placeholder"))
            .expect("the bridge config parses");
        bridge::generate_registration(&config, &registration).expect("registration written");
        let server = Server::builder()
            .config(
                "appservice_registrations",
                vec![registration.to_string_lossy().into_owned()],
            )
            .start()
            .await;
        let alice = server.register_user("alice").await;
        let config = dir.path().join("whatsapp-bridge.toml");
        std::fs::write(&config, config_text(&server.base_url())).expect("config written");
        let mut harness = Harness {
            _server: server,
            alice,
            sim,
            http: Http::new(),
            config,
            webhook_url,
            bridge: None,
            runs: 0,
            dir,
        };
        harness.start_bridge().await;
        harness
    }

    /// Starts the bridge binary and waits until it answers Meta's handshake.
    async fn start_bridge(&mut self) {
        assert!(self.bridge.is_none(), "the bridge is running already");
        self.runs += 1;
        let log = std::fs::File::create(self.log_path(self.runs)).expect("a log file");
        let child = Command::new(bridge_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the bridge binary starts");
        self.bridge = Some(child);
        let handshake = format!(
            "{}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42",
            self.webhook_url
        );
        let http = &self.http.0;
        wait_until("the bridge listens", Duration::from_secs(20), async || {
            http.get(&handshake)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    /// SIGKILL: the bridge gets no chance to finish anything.
    async fn kill_bridge(&mut self) {
        let mut child = self.bridge.take().expect("the bridge is running");
        child.kill().await.expect("the bridge is killed");
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("bridge-{run}.log"))
    }

    /// The end of every run's log, for failure messages.
    fn logs(&self) -> String {
        (1..=self.runs)
            .map(|run| {
                let text = std::fs::read_to_string(self.log_path(run)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- bridge run {run} ---\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn sim(&self, path: &str) -> String {
        format!("{}/_sim{path}", self.sim.url())
    }

    async fn contact_writes(&self, body: &str) {
        self.http
            .post(
                &self.sim(&format!("/contacts/{MARIA}/messages")),
                json!({"type": "text", "text": {"body": body}, "name": "Maria Lopez"}),
            )
            .await;
    }

    /// Every `POST /messages` the simulator received, in order: (text body, HTTP status).
    async fn message_calls(&self) -> Vec<(String, u16)> {
        let path = format!("/v21.0/{PHONE_NUMBER_ID}/messages");
        let calls = self.http.get(&self.sim("/calls")).await;
        calls
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["method"] == "POST" && c["path"] == path)
            .map(|c| {
                // A text's body, or an attachment's file name.
                let body = c["body"]["text"]["body"]
                    .as_str()
                    .or_else(|| c["body"]["document"]["filename"].as_str())
                    .unwrap_or_default();
                (
                    body.to_owned(),
                    c["status"].as_u64().unwrap_or_default() as u16,
                )
            })
            .collect()
    }

    /// Texts the Cloud API accepted, in order.
    async fn accepted_texts(&self) -> Vec<String> {
        self.message_calls()
            .await
            .into_iter()
            .filter(|(_, status)| *status == 200)
            .map(|(body, _)| body)
            .collect()
    }

    /// A small PDF in the Matrix media repository, uploaded by Alice; its `mxc://` URI.
    async fn upload_file(&self) -> String {
        let upload = self
            .alice
            .client()
            .request(
                complement_tests::Method::POST,
                "/_matrix/media/v3/upload?filename=form.pdf",
            )
            .raw_json(b"%PDF-1.4 a form".to_vec())
            .send()
            .await;
        assert_eq!(upload.status, 200, "{}", upload.text);
        upload.body["content_uri"]
            .as_str()
            .expect("an mxc URI")
            .to_owned()
    }

    /// Maria's portal, once Alice was invited to it (she joins it).
    async fn portal(&self) -> String {
        let mut found = None;
        wait_until("the portal invite", Duration::from_secs(30), async || {
            let sync = self.alice.get("/_matrix/client/v3/sync?timeout=0").await;
            let invited: Vec<String> = sync.body["rooms"]["invite"]
                .as_object()
                .map(|rooms| rooms.keys().cloned().collect())
                .unwrap_or_default();
            for room in invited {
                self.alice.join(&room).await;
            }
            for room in self.alice.joined_rooms().await {
                let path = state_path(&room, "m.bridge", &format!("whatsapp/{MARIA}"));
                if self.alice.get(&path).await.status == 200 {
                    found = Some(room);
                }
            }
            found.is_some()
        })
        .await;
        found.expect("the portal")
    }

    /// The room's messages, oldest first.
    async fn room_messages(&self, room: &str) -> Vec<Value> {
        self.alice
            .all_messages(room, "f", 100)
            .await
            .into_iter()
            .filter(|e| e["type"] == "m.room.message")
            .collect()
    }
}

/// A loopback address nothing listens on now (the bridge binds it, again after each restart).
fn free_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("an address")
}

/// The bridge binary: `$WHATSAPP_BRIDGE_BIN`, or `whatsapp-bridge` next to the `plexus` binary
/// cargo builds for these tests (`target/<profile>/`).
fn bridge_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("WHATSAPP_BRIDGE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable knows its path");
    let profile_dir: &Path = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps/");
    let path = profile_dir.join(format!("whatsapp-bridge{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the whatsapp-bridge binary is missing at {}; build it with `cargo build -p \
         plexus-whatsapp` (`cargo test --workspace` does), or point WHATSAPP_BRIDGE_BIN at it",
        path.display()
    );
    path
}

fn bodies_from(events: &[Value], sender: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["sender"] == sender)
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_bridge_killed_mid_conversation_loses_and_duplicates_nothing() {
    let mut harness = Harness::start().await;
    harness.contact_writes("c0").await;
    let room = harness.portal().await;
    let ghost = ghost_of(MARIA);
    wait_until(
        "Maria's first message",
        Duration::from_secs(20),
        async || bodies_from(&harness.room_messages(&room).await, &ghost) == ["c0"],
    )
    .await;

    // Thirty-five messages each way, interleaved and sent without waiting, in bursts; the bridge
    // is killed five times while it works through them, at different moments. Every fifth staff
    // message is a file (fetched from Matrix and uploaded before it is sent). Sends and uploads
    // are answered 25 ms after they take effect, so a kill often lands between Meta accepting
    // a message and the bridge learning its wamid, or between claiming a message and sending it.
    harness
        .http
        .put(&harness.sim("/latency"), json!({"ms": 25}))
        .await;
    let mxc = harness.upload_file().await;
    let kill_after_ms = [0, 10, 30, 60, 120];
    let mut contact_expected = vec!["c0".to_owned()];
    let mut staff_expected = Vec::new();
    let mut n = 0;
    for round in 0..=kill_after_ms.len() {
        for _ in 0..5 {
            n += 1;
            harness.contact_writes(&format!("c{n}")).await;
            if n % 5 == 3 {
                harness
                    .alice
                    .send_event(
                        &room,
                        "m.room.message",
                        json!({"msgtype": "m.file", "body": format!("s{n}"), "url": mxc,
                               "info": {"mimetype": "application/pdf"}}),
                    )
                    .await;
            } else {
                harness.alice.send_message(&room, &format!("s{n}")).await;
            }
            contact_expected.push(format!("c{n}"));
            staff_expected.push(format!("s{n}"));
        }
        let Some(ms) = kill_after_ms.get(round) else {
            break;
        };
        tokio::time::sleep(Duration::from_millis(*ms)).await;
        harness.kill_bridge().await;
        // Messages keep coming while it is down.
        harness.contact_writes(&format!("c{n}.down")).await;
        harness
            .alice
            .send_message(&room, &format!("s{n}.down"))
            .await;
        contact_expected.push(format!("c{n}.down"));
        staff_expected.push(format!("s{n}.down"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        harness.start_bridge().await;
    }

    // Every staff message ends up at WhatsApp, or (sent while the bridge died and never
    // confirmed) explained in the room.
    let settled = async |harness: &Harness| {
        let accepted = harness.accepted_texts().await;
        let events = harness.room_messages(&room).await;
        let notices = in_doubt_notices(&events);
        staff_expected
            .iter()
            .all(|s| accepted.contains(s) || notices.contains(s))
            && bodies_from(&events, &ghost).len() >= contact_expected.len()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !settled(&harness).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the conversation did not settle: WhatsApp accepted {:?}; the room has {:?}\n{}",
            harness.accepted_texts().await,
            bodies_from(&harness.room_messages(&room).await, &ghost),
            harness.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let events = harness.room_messages(&room).await;
    assert_eq!(
        bodies_from(&events, &ghost),
        contact_expected,
        "every contact message once, in order\n{}",
        harness.logs()
    );
    let accepted = harness.accepted_texts().await;
    let notices = in_doubt_notices(&events);
    let staff_sent: Vec<&String> = accepted
        .iter()
        .filter(|text| staff_expected.contains(text))
        .collect();
    let in_order: Vec<&String> = staff_expected
        .iter()
        .filter(|s| staff_sent.contains(s))
        .collect();
    assert_eq!(
        staff_sent,
        in_order,
        "every staff message at most once, in order\n{}",
        harness.logs()
    );
    for s in &staff_expected {
        assert!(
            accepted.contains(s) || notices.contains(s),
            "{s} neither reached WhatsApp nor was explained\n{}",
            harness.logs()
        );
    }
    // No other failure notice: nothing was refused.
    let failures: Vec<String> = bodies_from(&events, "@whatsappbot:localhost")
        .into_iter()
        .filter(|b| b.starts_with("⚠ Not delivered") && !b.contains("may not have reached"))
        .collect();
    assert!(failures.is_empty(), "unexpected failures: {failures:?}");
}

/// The staff messages the room was told may not have reached WhatsApp (the bot's notices reply
/// to them; the reply target's body is looked up).
fn in_doubt_notices(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("may not have reached WhatsApp"))
        })
        .filter_map(|notice| {
            let target = notice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"].as_str()?;
            events
                .iter()
                .find(|e| e["event_id"] == target)
                .and_then(|e| e["content"]["body"].as_str().map(str::to_owned))
        })
        .collect()
}

/// A run that dies after creating a portal but before recording it leaves a room behind: the
/// next run finds it by its alias (`#whatsapp_<phone>`) and bridges into it, not into a second
/// portal.
#[tokio::test]
async fn a_portal_made_by_a_run_that_died_is_the_one_used() {
    let mut harness = Harness::start().await;
    harness.kill_bridge().await;
    // What the dead run got as far as: the room, with its alias, state and invite, and nothing
    // in the bridge's store.
    let registration = std::fs::read_to_string(harness.dir.path().join("whatsapp.yaml"))
        .expect("the registration");
    let as_token = registration
        .lines()
        .find_map(|l| l.trim().strip_prefix("as_token:"))
        .map(|t| t.trim().trim_matches(['"', '\'']).to_owned())
        .expect("an as_token");
    let created = harness
        .http
        .0
        .post(format!(
            "{}/_matrix/client/v3/createRoom",
            harness._server.base_url()
        ))
        .bearer_auth(&as_token)
        .json(&json!({
            "preset": "private_chat",
            "room_alias_name": format!("whatsapp_{MARIA}"),
            "invite": ["@alice:localhost"],
            "initial_state": [{"type": "m.bridge", "state_key": format!("whatsapp/{MARIA}"),
                               "content": {"channel": {"id": MARIA}}}],
        }))
        .send()
        .await
        .expect("createRoom answers");
    assert_eq!(created.status(), 200);
    let left_behind = created.json::<Value>().await.expect("JSON")["room_id"]
        .as_str()
        .expect("a room id")
        .to_owned();

    harness.start_bridge().await;
    harness.contact_writes("are you there?").await;
    let room = harness.portal().await;
    assert_eq!(room, left_behind, "{}", harness.logs());
    wait_until(
        "the message in the portal",
        Duration::from_secs(20),
        async || {
            bodies_from(&harness.room_messages(&room).await, &ghost_of(MARIA))
                == vec!["are you there?".to_owned()]
        },
    )
    .await;
    // No second portal: Alice is in exactly one room bridged to Maria.
    let mut portals = 0;
    for joined in harness.alice.joined_rooms().await {
        let path = state_path(&joined, "m.bridge", &format!("whatsapp/{MARIA}"));
        if harness.alice.get(&path).await.status == 200 {
            portals += 1;
        }
    }
    assert_eq!(portals, 1);
}

#[tokio::test]
async fn a_throttled_message_is_retried_with_backoff_and_sent_once() {
    let harness = Harness::start().await;
    harness.contact_writes("hello").await;
    let room = harness.portal().await;

    // Throttled three times (fewer than the attempts): the bridge retries on its own.
    harness
        .http
        .post(
            &harness.sim("/rate-limit"),
            json!({"code": 130429, "count": 3}),
        )
        .await;
    let event_id = harness.alice.send_message(&room, "after throttling").await;
    wait_until(
        "the throttled message",
        Duration::from_secs(20),
        async || {
            harness
                .accepted_texts()
                .await
                .contains(&"after throttling".to_owned())
        },
    )
    .await;
    let calls: Vec<(String, u16)> = harness
        .message_calls()
        .await
        .into_iter()
        .filter(|(body, _)| body == "after throttling")
        .collect();
    assert_eq!(
        calls.iter().map(|(_, status)| *status).collect::<Vec<_>>(),
        [400, 400, 400, 200],
        "three refusals (Meta answers throttling with 400), then the message\n{}",
        harness.logs()
    );
    // The message carried its event id, and its statuses echo it back (what a bridge restarted
    // mid-send reconciles with).
    wait_until(
        "a status naming the event",
        Duration::from_secs(10),
        async || {
            let webhooks = harness.http.get(&harness.sim("/webhooks")).await;
            webhooks.as_array().into_iter().flatten().any(|w| {
            w["body"]["entry"][0]["changes"][0]["value"]["statuses"][0]
                ["biz_opaque_callback_data"]
                == event_id.as_str()
        })
        },
    )
    .await;

    // Throttled more often than the bridge tries: it gives the transaction back, and the
    // homeserver's redelivery sends it, still once.
    harness
        .http
        .post(
            &harness.sim("/rate-limit"),
            json!({"code": 131056, "count": ATTEMPTS + 1}),
        )
        .await;
    harness
        .alice
        .send_message(&room, "after a long throttle")
        .await;
    wait_until(
        "the long-throttled message",
        Duration::from_secs(30),
        async || {
            harness
                .accepted_texts()
                .await
                .contains(&"after a long throttle".to_owned())
        },
    )
    .await;
    let calls: Vec<u16> = harness
        .message_calls()
        .await
        .into_iter()
        .filter(|(body, _)| body == "after a long throttle")
        .map(|(_, status)| status)
        .collect();
    let mut expected = vec![400; ATTEMPTS + 1];
    expected.push(200);
    assert_eq!(calls, expected, "{}", harness.logs());
    let accepted = harness.accepted_texts().await;
    for text in ["after throttling", "after a long throttle"] {
        assert_eq!(accepted.iter().filter(|t| *t == text).count(), 1);
    }
    let events = harness.room_messages(&room).await;
    assert!(
        !bodies_from(&events, "@whatsappbot:localhost")
            .iter()
            .any(|b| b.starts_with("⚠ Not delivered")),
        "throttling is no delivery failure"
    );
}
