//! The `plexus` command line, run as a real process: configuration errors, `generate-config` and
//! `register-user`. (Whole-server stories live in `complement-tests/`.)

use std::process::Command;

fn plexus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
}

#[test]
fn generate_config_prints_a_config_that_serve_accepts() {
    let out = plexus().arg("generate-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("server_name = \"localhost\""));
    assert!(text.contains("[registration]"));
    text.parse::<toml::Table>().expect("generated config is valid TOML");
}

#[test]
fn an_unknown_config_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plexus.toml");
    std::fs::write(&config, "server_name = \"example.org\"\n[registration]\nopn = true\n").unwrap();
    let out = plexus()
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "start-up must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opn") && stderr.contains("registration"), "stderr: {stderr}");
}

#[test]
fn a_bad_listen_address_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plexus.toml");
    std::fs::write(&config, "listen = [\"localhost\"]\n").unwrap();
    let out = plexus().args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
}

#[test]
fn register_user_creates_an_account_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = |user: &str| {
        plexus()
            .args(["register-user", "--data-dir"])
            .arg(dir.path())
            .args([user, "long enough password", "--admin"])
            .output()
            .unwrap()
    };
    let first = run("carer");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("@carer:localhost (admin)"));
    let again = run("carer");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already taken"));
    let bad = run("Not Valid");
    assert!(!bad.status.success());
}

#[test]
fn a_database_from_a_newer_plexus_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let created = plexus()
        .args(["register-user", "--data-dir"])
        .arg(dir.path())
        .args(["someone", "long enough password"])
        .output()
        .unwrap();
    assert!(created.status.success());
    let db = rusqlite::Connection::open(dir.path().join("plexus.db")).unwrap();
    db.execute_batch("PRAGMA user_version = 9999").unwrap();
    drop(db);
    let out = plexus()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("9999") && stderr.contains("newer"), "stderr: {stderr}");
}
