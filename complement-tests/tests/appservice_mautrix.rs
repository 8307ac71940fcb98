//! Compatibility with a real third-party appservice framework: a bot built on mautrix-python
//! (PyPI `mautrix`, pinned in `clients/mautrix_requirements.txt`, installed once into
//! `target/mautrix-venv`) registers with Plexus through an appservice registration file, pings
//! the server, creates a ghost, joins a room, receives a user's message in a transaction and
//! answers it as the ghost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use complement_tests::{Server, json};

/// Where the virtual environment lives: next to the build output, so it is reused.
fn venv_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/appservice_mautrix-… → target/mautrix-venv
    exe.ancestors()
        .nth(3)
        .expect("target directory")
        .join("mautrix-venv")
}

fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Creates the virtual environment with the pinned mautrix unless it is already there.
fn python_with_mautrix() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import mautrix.appservice"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "create a virtual environment",
        );
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(clients().join("mautrix_requirements.txt")),
            "install mautrix from PyPI (the first run needs the PyPI registry)",
        );
    }
    python
}

fn run(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot {what}: {e}"));
    assert!(
        out.status.success(),
        "could not {what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free port on loopback for the bot (the registration must name it before Plexus starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn a_mautrix_bot_registers_joins_and_answers_as_its_ghost() {
    let python = tokio::task::spawn_blocking(python_with_mautrix)
        .await
        .expect("the install task");
    let port = free_port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let registration = dir.path().join("mautrix-bot.yaml");
    std::fs::write(
        &registration,
        format!(
            "id: mautrix-bot\n\
             url: http://127.0.0.1:{port}\n\
             as_token: mautrix-as-token\n\
             hs_token: mautrix-hs-token\n\
             sender_localpart: echobot\n\
             rate_limited: false\n\
             namespaces:\n  users:\n    - exclusive: true\n      regex: '@_echo_.*:localhost'\n"
        ),
    )
    .expect("write the registration");
    let server = Server::builder()
        .config(
            "appservice_registrations",
            vec![registration.display().to_string()],
        )
        .start()
        .await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    let ghost = "@_echo_ghost:localhost";

    let config = json!({
        "homeserver": server.base_url(),
        "domain": "localhost",
        "as_token": "mautrix-as-token",
        "hs_token": "mautrix-hs-token",
        "bot_localpart": "echobot",
        "id": "mautrix-bot",
        "port": port,
        "room_id": room,
        "ghost": ghost,
    });
    let bot = tokio::process::Command::new(&python)
        .arg(clients().join("mautrix_bot.py"))
        .arg(config.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the mautrix bot");

    // The ghost joins (with the name the bot gave it); Alice speaks; the ghost answers.
    let joined = wait_for(Duration::from_secs(60), async || {
        alice
            .joined_members(&room)
            .await
            .contains(&ghost.to_owned())
    })
    .await;
    let answered = joined && {
        alice.send_message(&room, "hello bridge").await;
        wait_for(Duration::from_secs(30), async || {
            let page = alice.messages(&room, "b", None, 10).await;
            page["chunk"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["sender"] == ghost && e["content"]["body"] == "echo: hello bridge")
        })
        .await
    };
    let out = tokio::time::timeout(Duration::from_secs(30), bot.wait_with_output())
        .await
        .ok()
        .and_then(Result::ok);
    let (stdout, stderr) = out
        .as_ref()
        .map(|o| {
            (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap_or_default();
    assert!(
        answered,
        "the ghost did not {}:\n--- bot stdout ---\n{stdout}\n--- bot stderr ---\n{stderr}\n--- server ---\n{}",
        if joined { "answer" } else { "join" },
        server.stderr_tail()
    );
    assert!(stdout.contains("@@ ping"), "{stdout}");
    assert!(
        stdout.contains(r#"@@ received {"sender": "@alice:localhost", "body": "hello bridge"}"#),
        "{stdout}"
    );
    let member = alice.state_event(&room, "m.room.member", ghost).await;
    assert_eq!(member["content"]["displayname"], "Echo Ghost", "{member}");
}

/// Polls `condition` until it holds or `timeout` passes; whether it held.
async fn wait_for(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
