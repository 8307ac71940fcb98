//! Third-party clients against a real server. matrix-nio (a Python Matrix client library) is
//! installed from PyPI into a virtual environment under `target/`, once, and then drives the
//! account API the way an application would.

use std::path::{Path, PathBuf};
use std::process::Command;

use complement_tests::Server;

/// Where the client virtual environment lives: next to the build output, so it is reused.
fn venv_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/interop-… → target/interop-venv
    exe.ancestors()
        .nth(3)
        .expect("target directory")
        .join("interop-venv")
}

/// Creates the virtual environment with matrix-nio unless it is already there.
fn python_with_nio() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import nio"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "create a virtual environment",
        );
        run(
            Command::new(&python).args(["-m", "pip", "install", "--quiet", "matrix-nio==0.26.0"]),
            "install matrix-nio from PyPI",
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

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

#[tokio::test]
async fn matrix_nio_registers_logs_in_and_manages_its_account() {
    let python = tokio::task::spawn_blocking(python_with_nio).await.unwrap();
    let server = Server::start().await;
    let out = tokio::process::Command::new(&python)
        .arg(script("nio_account.py"))
        .arg(server.base_url())
        .output()
        .await
        .expect("run the matrix-nio script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "matrix-nio failed against plexus:\n{stdout}\n{}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr_tail()
    );
    assert!(stdout.contains("logout: ok"), "{stdout}");
}
