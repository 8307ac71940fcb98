//! End-to-end encryption with a third-party client library: matrix-js-sdk with its Rust crypto
//! (matrix-sdk-crypto built to WebAssembly) as Alice, and a vodozemac [`E2eeDevice`] as Bob,
//! exchange Megolm-encrypted messages in an encrypted room through Plexus, with both on one
//! server and with Bob on another. The library finds Bob's device through `/keys/query`, claims
//! a one-time key, sends him the room key by Olm to-device message and the message into the
//! room; Bob answers the same way, and the library decrypts the answer and knows Bob's device by
//! the keys he uploaded.
//!
//! The library is installed once with `npm ci` from the pinned versions in
//! `clients/e2ee_js/package-lock.json` into `target/interop-js` (the first run needs the npm
//! registry; later runs need no network), and runs on the machine's Node (20 or newer).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use complement_tests::e2ee::E2eeDevice;
use complement_tests::{Federation, Server, User, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// The npm project (package.json, package-lock.json) and the script, under `clients/`.
fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join("e2ee_js")
}

/// Where the library is installed: next to the build output, so it is reused.
fn install_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2ee_interop-… → target/interop-js
    exe.ancestors()
        .nth(3)
        .expect("target directory")
        .join("interop-js")
}

/// Installs the pinned matrix-js-sdk unless the same lock file was installed already, and
/// returns the directory holding `node_modules` and the script. The tests of this file share one
/// install: the first to get here installs, the others wait for it.
fn js_sdk() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = install_dir();
            let lock =
                std::fs::read(sources().join("package-lock.json")).expect("the npm lock file");
            let marker = dir.join("installed-package-lock.json");
            if std::fs::read(&marker).ok().as_ref() != Some(&lock) {
                install(&dir, &lock);
            }
            // The script must sit next to `node_modules` for Node to resolve the library.
            std::fs::copy(sources().join("alice.mjs"), dir.join("alice.mjs"))
                .expect("copy the script");
            dir
        })
        .clone()
}

/// `npm ci` into a fresh directory beside `dir`, which then replaces `dir`: a failed or
/// interrupted install never looks finished.
fn install(dir: &Path, lock: &[u8]) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the matrix-js-sdk interop test needs Node 20 or newer on PATH: {node:?}"
    );
    let staging = dir.with_extension(format!("installing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("create the install directory");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(sources().join(file), staging.join(file)).expect("copy the npm project");
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&staging)
        .output();
    let out = out.unwrap_or_else(|e| {
        panic!("cannot run npm to install matrix-js-sdk (is npm on PATH?): {e}")
    });
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        out.status.success(),
        "could not install matrix-js-sdk with `npm ci` into {} (the first run needs the npm \
         registry):\n{}{}",
        staging.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(staging.join("installed-package-lock.json"), lock).expect("write the marker");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&staging, dir).expect("move the installed library into place");
}

/// A running script: its `@@ ` lines one by one, and everything it printed, for failures.
struct Script {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    output: Arc<Mutex<String>>,
}

impl Script {
    fn start(dir: &Path, args: &[&str]) -> Script {
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("alice.mjs"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let (sender, lines) = mpsc::unbounded_channel();
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(collect(stdout, output.clone(), Some(sender)));
        tokio::spawn(collect(stderr, output.clone(), None));
        Script {
            child,
            lines,
            output,
        }
    }

    /// The value of the next `@@ {what} …` line; fails with all the output if the script ends or
    /// says something else first.
    async fn expect(&mut self, what: &str, servers: &[&Server]) -> String {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.recv()).await;
        let prefix = format!("{what} ");
        match line {
            Ok(Some(line)) if line.starts_with(&prefix) => line[prefix.len()..].to_owned(),
            other => panic!(
                "matrix-js-sdk did not say `{what}` (got {other:?}); its output:\n{}{}",
                self.output.lock().expect("the output lock"),
                server_logs(servers)
            ),
        }
    }

    /// Waits for the script to exit with success. With `PLEXUS_TEST_ECHO` set, its output is
    /// echoed, as the servers' is.
    async fn finish(mut self, servers: &[&Server]) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        if std::env::var_os("PLEXUS_TEST_ECHO").is_some() {
            eprintln!("{}", self.output.lock().expect("the output lock"));
        }
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "matrix-js-sdk did not exit cleanly ({status:?}); its output:\n{}{}",
            self.output.lock().expect("the output lock"),
            server_logs(servers)
        );
    }
}

/// The end of each server's log, for failure messages.
fn server_logs(servers: &[&Server]) -> String {
    servers
        .iter()
        .map(|s| format!("\n--- {} ---\n{}", s.server_name(), s.stderr_tail()))
        .collect()
}

/// Copies a stream of the script into `output`, and its `@@ ` lines into `lines`.
async fn collect(
    stream: impl AsyncRead + Unpin,
    output: Arc<Mutex<String>>,
    lines: Option<mpsc::UnboundedSender<String>>,
) {
    let mut reader = BufReader::new(stream).lines();
    while let Ok(Some(line)) = reader.next_line().await {
        if let (Some(lines), Some(said)) = (&lines, line.strip_prefix("@@ ")) {
            let _ = lines.send(said.to_owned());
        }
        let mut output = output.lock().expect("the output lock");
        output.push_str(&line);
        output.push('\n');
    }
}

/// An encrypted room (`m.megolm.v1.aes-sha2`) of Alice's that Bob joined through `via`.
async fn encrypted_room(alice: &User, bob: &User, via: &str) -> String {
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.encryption",
                "state_key": "",
                "content": { "algorithm": "m.megolm.v1.aes-sha2" },
            }],
        }))
        .await;
    bob.join_via(&room, via).await.ok();
    room
}

/// The story of both tests, once Bob's device has its keys up and is in `room`: Alice's library
/// logs in on a new device of hers and sends an encrypted text; Bob gets the room key by Olm
/// and decrypts it; Bob answers, and the library decrypts the answer.
async fn exchange(js: &Path, alice: &User, bob: &mut E2eeDevice, room: &str, servers: &[&Server]) {
    bob.sync(0).await;
    let mut script = Script::start(
        js,
        &[
            &servers[0].base_url(),
            &alice.user_id,
            &alice.password,
            room,
            bob.user_id(),
            "the handover is at 7",
        ],
    );
    let alices_device = script.expect("device", servers).await;
    let sent = script.expect("sent", servers).await;

    let room_key = bob.receive_to_device("m.room_key").await;
    assert_eq!(room_key.sender, alice.user_id);
    assert_eq!(room_key.content["room_id"], room);
    let payload = room_key.payload.expect("the room key came through Olm");
    assert_eq!(payload["sender_device"], alices_device.as_str());
    let message = bob.decrypt_room_message(room).await;
    assert_eq!(message.event_id, sent);
    assert_eq!(message.sender, alice.user_id);
    assert_eq!(message.event_type, "m.room.message");
    assert_eq!(message.body(), "the handover is at 7");

    // Bob answers with a Megolm session of his own, its key sent to the library's device.
    bob.share_megolm_session(room, &[(&alice.user_id, &alices_device)])
        .await;
    bob.send_encrypted(room, "thanks, see you there").await;
    let decrypted: Value = serde_json::from_str(&script.expect("decrypted", servers).await)
        .expect("the decrypted body as JSON");
    assert_eq!(decrypted, "thanks, see you there");
    // The library knows Bob's one device by the keys Bob uploaded.
    let known: Value = serde_json::from_str(&script.expect("peer-devices", servers).await)
        .expect("the peer's devices as JSON");
    assert_eq!(
        known,
        json!([{
            "device_id": bob.device_id(),
            "curve25519": bob.curve25519(),
            "ed25519": bob.ed25519(),
        }])
    );
    script.finish(servers).await;
}

#[tokio::test]
async fn matrix_js_sdk_and_a_vodozemac_client_exchange_encrypted_messages_through_plexus() {
    let js = tokio::task::spawn_blocking(js_sdk)
        .await
        .expect("the install task");
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut bob = E2eeDevice::new(server.register_user("bob").await);
    bob.upload_keys(10).await;
    let room = encrypted_room(&alice, &bob.user, server.server_name()).await;
    exchange(&js, &alice, &mut bob, &room, &[&server]).await;
}

#[tokio::test]
async fn matrix_js_sdk_on_one_server_and_a_vodozemac_client_on_another_exchange_encrypted_messages()
{
    let js = tokio::task::spawn_blocking(js_sdk)
        .await
        .expect("the install task");
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let mut bob = E2eeDevice::new(hs2.register_user("bob").await);
    bob.upload_keys(10).await;
    let room = encrypted_room(&alice, &bob.user, "hs1.test").await;
    exchange(&js, &alice, &mut bob, &room, &[&hs1, &hs2]).await;
}
