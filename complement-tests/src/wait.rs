//! Waiting on time-based behaviour (token expiry) by polling, so tests wait only as long as the
//! server needs rather than sleeping a fixed worst case.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a condition is re-checked.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Re-checks `condition` until it holds, panicking with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The current time in milliseconds since the Unix epoch, as Matrix timestamps are.
pub fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_millis()).expect("milliseconds fit in u64")
}
