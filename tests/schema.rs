//! The binary refuses a database written by a newer Plexus. (Besides what it tests, this
//! integration test makes `cargo test --workspace` build `target/debug/plexus`, which the
//! black-box suite in `complement-tests/` runs.)

use std::process::Command;

fn plexus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
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
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
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
    assert!(
        stderr.contains("9999") && stderr.contains("newer"),
        "stderr: {stderr}"
    );
}
