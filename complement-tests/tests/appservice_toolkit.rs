//! The bridge toolkit's example echo bridge (`appservices/toolkit/examples/echo.rs`) against a
//! real Plexus: it writes its registration, Plexus loads it from `appservice_registrations`, a
//! user invites one of its ghosts, and the ghost answers the user's messages — through
//! transactions, identity assertion and the toolkit's store, with nothing echoed back twice.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use complement_tests::{Server, TestAppservice, User, Value, json, wait_until};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The echo example: `$ECHO_BIN` if set, otherwise next to the test executable
/// (`target/<profile>/examples/echo`), built with cargo when it is not there yet (`cargo test
/// -p plexus-bridge-toolkit` or `cargo build --example echo` keeps it current).
fn echo_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ECHO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps/");
    let path = profile_dir
        .join("examples")
        .join(format!("echo{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "plexus-bridge-toolkit", "--example", "echo"])
            .status()
            .expect("running cargo to build the echo example");
        assert!(status.success(), "building the echo example failed");
    }
    path
}

/// Starts `echo run …` and waits until it listens.
async fn start_echo(registration: &Path, server: &Server, addr: &str, store: &Path) -> Child {
    let mut child = Command::new(echo_bin())
        .arg("run")
        .arg(registration)
        .arg(server.base_url())
        .arg(server.server_name())
        .arg(addr)
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the echo bridge");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "the echo bridge did not start");
    child
}

/// The latest timeline messages of a room, oldest first.
async fn messages(user: &User, room: &str) -> Vec<Value> {
    let page = user.messages(room, "b", None, 50).await;
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

#[tokio::test]
async fn the_echo_bridge_answers_as_its_ghost() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let registration = dir.path().join("echo.yaml");
    let addr = TestAppservice::reserve_address().await.to_string();
    let status = Command::new(echo_bin())
        .arg("generate-registration")
        .arg(&registration)
        .arg(format!("http://{addr}"))
        .arg("localhost")
        .status()
        .await
        .expect("running echo generate-registration");
    assert!(status.success(), "echo generate-registration failed");

    let server = Server::builder()
        .config(
            "appservice_registrations",
            vec![registration.to_string_lossy().into_owned()],
        )
        .start()
        .await;
    let _echo = start_echo(&registration, &server, &addr, &dir.path().join("echo.db")).await;

    // Alice invites the ghost of her contact "bob"; the bridge makes the room bob's portal.
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    let ghost = format!("@echo_bob:{}", server.server_name());
    alice.invite(&room, &ghost).await;
    wait_until("the ghost joins", Duration::from_secs(20), async || {
        alice.joined_members(&room).await.contains(&ghost)
    })
    .await;

    // Bob's echo comes back from his ghost, formatted, exactly once.
    alice.send_message(&room, "hello *there*").await;
    wait_until("the ghost answers", Duration::from_secs(20), async || {
        messages(&alice, &room)
            .await
            .iter()
            .any(|e| e["sender"] == ghost)
    })
    .await;
    let answer = messages(&alice, &room)
        .await
        .into_iter()
        .find(|e| e["sender"] == ghost)
        .expect("the ghost's answer");
    assert_eq!(answer["content"]["body"], "hello *there*");
    assert_eq!(
        answer["content"]["formatted_body"],
        "hello <strong>there</strong>"
    );

    // A message the fake network refuses gets a failure notice from the bot; the ghost's echo
    // of the first message was not bridged back (it would have been echoed again).
    alice.send_message(&room, "this will fail").await;
    let bot = format!("@echobot:{}", server.server_name());
    wait_until("the failure notice", Duration::from_secs(20), async || {
        messages(&alice, &room)
            .await
            .iter()
            .any(|e| e["sender"] == bot)
    })
    .await;
    let events = messages(&alice, &room).await;
    let notice = events
        .iter()
        .find(|e| e["sender"] == bot)
        .expect("the notice");
    assert_eq!(notice["content"]["msgtype"], "m.notice");
    assert!(
        notice["content"]["body"]
            .as_str()
            .unwrap_or_default()
            .starts_with("⚠ Not delivered:"),
        "{notice}"
    );
    let from_ghost = events.iter().filter(|e| e["sender"] == ghost).count();
    assert_eq!(from_ghost, 1, "the ghost answered once: {events:#?}");
}
