//! Retries of Cloud API calls inside the bridge, with exponential back-off, and the `[delivery]`
//! section of the configuration that tunes them.
//!
//! Only what Meta documents as worth trying again soon is retried here: the throttling codes
//! (4 and 80007 — app and account call limits; 130429 — throughput; 131056 — the pair rate, for
//! which Meta advises waiting longer each time), Meta's own failures (1, 2, 131000, 131016, any
//! HTTP 5xx or 429), and connections that could not be made (nothing was sent). Each retry waits
//! `backoff_base_ms`, then twice as long each time up to `backoff_max_ms`, with a little jitter;
//! after `attempts` calls the error is handed back and the bridge falls back to failing the
//! appservice transaction, so the homeserver redelivers it later.
//!
//! The retries run inside the handling of one event, and the toolkit's receiver handles one
//! transaction at a time, so a portal's messages are never reordered by a retry: the next
//! message waits for this one.
//!
//! A call whose request may have reached Meta without an answer coming back is never retried:
//! sending it again could deliver it twice (see [`CallError::InDoubt`]).

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use super::cloud::CallError;

/// `[delivery]`: how the bridge retries and when it gives up on a send whose outcome it lost.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Calls made at most for one request (the first included); 1 turns retries off.
    pub attempts: u32,
    /// The wait before the first retry, in milliseconds; doubled for each further one.
    pub backoff_base_ms: u64,
    /// The longest wait between two attempts, in milliseconds.
    pub backoff_max_ms: u64,
    /// How long a message whose send began but whose outcome was lost (the bridge stopped
    /// mid-send) waits for a status webhook naming it before it is marked failed, in seconds.
    pub in_doubt_grace_secs: u64,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            attempts: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 30_000,
            in_doubt_grace_secs: 600,
        }
    }
}

impl DeliveryConfig {
    pub fn backoff(&self) -> Backoff {
        Backoff {
            attempts: self.attempts.max(1),
            base: Duration::from_millis(self.backoff_base_ms),
            max: Duration::from_millis(self.backoff_max_ms.max(self.backoff_base_ms)),
        }
    }

    pub fn in_doubt_grace(&self) -> Duration {
        Duration::from_secs(self.in_doubt_grace_secs)
    }
}

/// A retry policy: how many calls, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        DeliveryConfig::default().backoff()
    }
}

impl Backoff {
    /// The wait after the `failures`-th failed call (1 for the first), without jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.base
            .checked_mul(1 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Calls `call` until it succeeds, fails for good, or `attempts` calls failed in a way worth
    /// retrying; answers the last outcome. `what` names the call in logs.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut failures = 0;
        loop {
            match call().await {
                Err(CallError::Retryable(reason)) => {
                    failures += 1;
                    if failures >= self.attempts {
                        return Err(CallError::Transient(format!(
                            "{reason} (gave up after {failures} attempts)"
                        )));
                    }
                    let delay = self.delay(failures);
                    // Up to a quarter more, so bridges throttled together do not retry in step.
                    let jitter = delay.mul_f64(rand::random::<f64>() / 4.0);
                    tracing::info!(call = what, attempt = failures, %reason,
                        delay_ms = (delay + jitter).as_millis() as u64,
                        "Cloud API call failed; retrying");
                    tokio::time::sleep(delay + jitter).await;
                }
                outcome => return outcome,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick(attempts: u32) -> Backoff {
        Backoff {
            attempts,
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let backoff = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
        };
        let delays: Vec<u64> = (1..=6)
            .map(|n| backoff.delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_millis(1_000));
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_until_success() {
        let counter = AtomicU32::new(0);
        let calls = &counter;
        let answer = quick(5)
            .run("test", move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(CallError::Retryable("throttled".into()))
                } else {
                    Ok("wamid.1")
                }
            })
            .await;
        assert_eq!(answer.unwrap(), "wamid.1");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_other_errors_not_retried() {
        let counter = AtomicU32::new(0);
        let calls = &counter;
        let answer: Result<(), _> = quick(3)
            .run("test", move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(CallError::Retryable("throttled".into()))
            })
            .await;
        assert!(matches!(answer, Err(CallError::Transient(r)) if r.contains("3 attempts")));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        for error in [
            CallError::InDoubt("timed out".into()),
            CallError::Transient("token".into()),
            CallError::Refused {
                code: 131047,
                reason: "window".into(),
            },
        ] {
            let calls = AtomicU32::new(0);
            let answer: Result<(), _> = quick(5)
                .run("test", || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let error = error.clone();
                    async move { Err(error) }
                })
                .await;
            assert_eq!(answer.unwrap_err(), error);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn the_section_is_optional_and_partial() {
        let config: DeliveryConfig = toml::from_str("attempts = 2").unwrap();
        assert_eq!(config.attempts, 2);
        assert_eq!(config.backoff_max_ms, 30_000);
        assert_eq!(DeliveryConfig::default().backoff().attempts, 5);
    }
}
