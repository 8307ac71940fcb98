//! One running `plexus serve` child: spawning it, learning its URL from the
//! `plexus listening on http://...` line on stdout (and its federation URL from the
//! `plexus federation listening on https://...` line printed before it, if any), draining both output pipes for as long as it
//! lives (a full pipe would block the server), and keeping the last lines for failure messages.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::binary::{plexus_bin, plexus_command};

/// The line prefix the server prints once per listener when it accepts connections.
const LISTENING_PREFIX: &str = "plexus listening on ";
/// The line prefix printed once per federation (TLS) listener, before the client listeners'.
const FEDERATION_LISTENING_PREFIX: &str = "plexus federation listening on ";
/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many recent lines of each stream are kept for failure messages.
const TAIL_LINES: usize = 200;

/// The last lines a child printed, shared between the draining task and the test.
#[derive(Clone, Default)]
pub(crate) struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    pub(crate) fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub(crate) fn text(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Why a server did not come up; `Debug` prints the readable form so `unwrap()` shows it.
pub struct StartError {
    pub message: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(status) = self.status {
            write!(f, " (exit status: {status})")?;
        }
        write!(
            f,
            "\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.stdout, self.stderr
        )
    }
}

impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) base_url: String,
    /// `https://ADDR` of the first federation listener, when the server has one.
    pub(crate) federation_url: Option<String>,
    pub(crate) stdout: Tail,
    pub(crate) stderr: Tail,
}

impl Process {
    /// Spawns `bin args` and waits until it prints its listening line.
    pub(crate) async fn spawn(args: &[OsString]) -> Result<Process, StartError> {
        let stdout = Tail::default();
        let stderr = Tail::default();
        let mut child = plexus_command()
            .args(args)
            .spawn()
            .map_err(|e| StartError {
                message: format!("could not spawn {}: {e}", plexus_bin().display()),
                status: None,
                stdout: String::new(),
                stderr: String::new(),
            })?;

        let (url_tx, url_rx) = oneshot::channel();
        let federation_url = Arc::new(Mutex::new(None));
        let stdout_pipe = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let urls = Urls {
            client: Some(url_tx),
            federation: federation_url.clone(),
        };
        let stdout_task = drain(stdout_pipe, stdout.clone(), "stdout", Some(urls));
        let stderr_task = drain(stderr_pipe, stderr.clone(), "stderr", None);

        let failure = match tokio::time::timeout(START_TIMEOUT, url_rx).await {
            Ok(Ok(base_url)) => {
                // The federation line comes first, so it has been read by now.
                let federation_url = federation_url
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                return Ok(Process {
                    child,
                    base_url,
                    federation_url,
                    stdout,
                    stderr,
                });
            }
            Ok(Err(_)) => "the server closed stdout without printing its listening line".to_owned(),
            Err(_) => {
                let _ = child.start_kill();
                format!(
                    "the server printed no `{LISTENING_PREFIX}...` line within {START_TIMEOUT:?}"
                )
            }
        };
        // The child is exiting (or was killed); collect its status and the rest of its output so
        // the message shows why it died.
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        for task in [stdout_task, stderr_task] {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        Err(StartError {
            message: failure,
            status,
            stdout: stdout.text(),
            stderr: stderr.text(),
        })
    }
}

/// Where `drain` reports the listening URLs it reads.
struct Urls {
    client: Option<oneshot::Sender<String>>,
    federation: Arc<Mutex<Option<String>>>,
}

/// Reads `pipe` line by line until it closes, keeping a tail, echoing lines when
/// `PLEXUS_TEST_ECHO` is set, and reporting the first listening URLs through `urls`.
fn drain(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    tail: Tail,
    name: &'static str,
    mut urls: Option<Urls>,
) -> JoinHandle<()> {
    let echo = std::env::var_os("PLEXUS_TEST_ECHO").is_some();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[plexus {name}] {line}");
            }
            if let Some(urls) = urls.as_mut() {
                let line = line.trim();
                if let Some(url) = line.strip_prefix(LISTENING_PREFIX)
                    && let Some(tx) = urls.client.take()
                {
                    let _ = tx.send(url.trim_end_matches('/').to_owned());
                }
                if let Some(url) = line.strip_prefix(FEDERATION_LISTENING_PREFIX) {
                    let mut slot = urls.federation.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert_with(|| url.trim_end_matches('/').to_owned());
                }
            }
            tail.push(line);
        }
    })
}
