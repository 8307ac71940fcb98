//! Finds the `plexus` binary under test and runs its one-shot CLI verbs (`generate-config`,
//! `register-user`, ...). Long-running servers are started by `process`, not here.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// How long a one-shot CLI verb may take before the harness gives up on it.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The `plexus` binary to test: `$PLEXUS_BIN` if set, otherwise `target/<profile>/plexus` next to
/// the test executable (which cargo puts in `target/<profile>/deps/`).
///
/// Panics with a hint on how to build it when the binary does not exist, because every test
/// would otherwise fail with a confusing spawn error.
pub fn plexus_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PLEXUS_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PLEXUS_BIN points at {}, which is not a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps/");
    let path = profile_dir.join(format!("plexus{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the plexus binary is missing at {}; build it with `cargo build` (or run \
         `cargo test --workspace`), or point PLEXUS_BIN at it",
        path.display()
    );
    path
}

/// A `plexus` command with the environment made hermetic: `PLEXUS__SECTION__KEY` variables
/// override config files, so any inherited from the developer's shell are removed.
pub(crate) fn plexus_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(plexus_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PLEXUS__") {
            command.env_remove(name);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What a finished CLI invocation printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics, showing both output streams, unless the command exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "plexus exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `plexus <args>` to completion and returns its output.
pub async fn run_plexus<I, S>(args: I) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let child = plexus_command()
        .args(&args)
        .spawn()
        .expect("spawning plexus");
    let output = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`plexus {args:?}` did not finish within {CLI_TIMEOUT:?}"))
        .expect("waiting for plexus");
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
