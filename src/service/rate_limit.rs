//! Token-bucket rate limiting, per action and key (a client address or a user id).
//!
//! Appservices' users are exempt, as in Synapse: every appservice's own user, and the users of
//! the namespaces of registrations that say `rate_limited: false`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::UserId;

use crate::config::{Bucket, RateLimitsConfig};
use crate::service::appservice::{Appservices, Registration};

use super::{Error, Result};

/// What is being limited; each action has its own bucket settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    FailedLogin,
    Registration,
    Message,
}

/// Buckets not touched for this long are full again and are dropped to bound memory.
const IDLE_EVICTION: Duration = Duration::from_secs(600);

pub struct RateLimiter {
    config: RateLimitsConfig,
    buckets: Mutex<Buckets>,
    /// The registrations whose users may be exempt.
    appservices: Vec<std::sync::Arc<Registration>>,
}

#[derive(Default)]
struct Buckets {
    levels: HashMap<(Action, String), (f64, Instant)>,
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitsConfig) -> RateLimiter {
        RateLimiter {
            config: config.clone(),
            buckets: Mutex::new(Buckets::default()),
            appservices: Vec::new(),
        }
    }

    /// Exempts the appservices' users (see the module comment).
    pub fn exempting(mut self, appservices: &Appservices) -> RateLimiter {
        self.appservices = appservices.all().to_vec();
        self
    }

    /// Whether `key` is a user an appservice exempts from rate limits.
    fn is_exempt(&self, key: &str) -> bool {
        if self.appservices.is_empty() || !key.starts_with('@') {
            return false;
        }
        let Ok(user) = UserId::parse(key) else {
            return false;
        };
        self.appservices
            .iter()
            .any(|r| user == r.sender || (!r.rate_limited && r.is_in_user_namespace(&user)))
    }

    fn bucket(&self, action: Action) -> Bucket {
        match action {
            Action::Login => self.config.login,
            Action::FailedLogin => self.config.failed_login,
            Action::Registration => self.config.registration,
            Action::Message => self.config.message,
        }
    }

    /// Takes one token for `key`, or says how long to wait with `Error::LimitExceeded`.
    pub fn check(&self, action: Action, key: &str) -> Result<()> {
        self.check_at(action, key, Instant::now())
    }

    /// Whether `key` would be limited, without taking a token.
    pub fn would_limit(&self, action: Action, key: &str) -> Result<()> {
        self.take(action, key, Instant::now(), false)
    }

    fn check_at(&self, action: Action, key: &str, now: Instant) -> Result<()> {
        self.take(action, key, now, true)
    }

    fn take(&self, action: Action, key: &str, now: Instant, consume: bool) -> Result<()> {
        if !self.config.enabled || self.is_exempt(key) {
            return Ok(());
        }
        let Bucket { per_second, burst } = self.bucket(action);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.sweep(now);
        let capacity = f64::from(burst);
        let (level, at) = buckets
            .levels
            .get(&(action, key.to_owned()))
            .copied()
            .unwrap_or((capacity, now));
        let refilled = (level + now.duration_since(at).as_secs_f64() * per_second).min(capacity);
        if refilled < 1.0 {
            let wait = (1.0 - refilled) / per_second;
            return Err(Error::LimitExceeded {
                retry_after: Duration::from_secs_f64(wait.max(0.001)),
            });
        }
        let remaining = if consume { refilled - 1.0 } else { refilled };
        buckets
            .levels
            .insert((action, key.to_owned()), (remaining, now));
        Ok(())
    }
}

impl Buckets {
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < IDLE_EVICTION)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.levels
            .retain(|_, (_, at)| now.duration_since(*at) < IDLE_EVICTION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        let bucket = Bucket { per_second, burst };
        RateLimiter::new(&RateLimitsConfig {
            enabled: true,
            login: bucket,
            failed_login: bucket,
            registration: bucket,
            message: bucket,
        })
    }

    #[test]
    fn a_burst_passes_then_the_bucket_refills_at_its_rate() {
        let limiter = limiter(2.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check_at(Action::Login, "1.2.3.4", start).unwrap();
        }
        let Err(Error::LimitExceeded { retry_after }) =
            limiter.check_at(Action::Login, "1.2.3.4", start)
        else {
            panic!("the fourth request of a burst of three must be limited");
        };
        assert!(retry_after <= Duration::from_millis(500) && retry_after > Duration::ZERO);
        // Another key and another action have their own buckets.
        limiter.check_at(Action::Login, "5.6.7.8", start).unwrap();
        limiter
            .check_at(Action::Registration, "1.2.3.4", start)
            .unwrap();
        // Half a second later one token is back.
        let later = start + Duration::from_millis(500);
        limiter.check_at(Action::Login, "1.2.3.4", later).unwrap();
        assert!(limiter.check_at(Action::Login, "1.2.3.4", later).is_err());
    }

    #[test]
    fn bots_and_the_ghosts_of_unlimited_bridges_are_exempt() {
        let registration = |id: &str, rate_limited: bool| {
            let text = format!(
                "id: {id}\nurl: null\nas_token: as-{id}\nhs_token: hs-{id}\n\
                 sender_localpart: {id}bot\nrate_limited: {rate_limited}\n\
                 namespaces:\n  users: [{{exclusive: true, regex: '@{id}_.*'}}]\n"
            );
            let server = ruma::server_name!("hs.example");
            Registration::parse(std::path::Path::new("r.yaml"), &text, server).unwrap()
        };
        let appservices = Appservices::from_registrations(vec![
            registration("wa", false),
            registration("irc", true),
        ]);
        let limiter = limiter(0.001, 1).exempting(&appservices);
        let start = Instant::now();
        for key in [
            "@wa_1:hs.example",
            "@wabot:hs.example",
            "@ircbot:hs.example",
        ] {
            for _ in 0..5 {
                limiter.check_at(Action::Message, key, start).unwrap();
            }
        }
        for key in ["@irc_1:hs.example", "@wa_1:elsewhere.example", "10.0.0.1"] {
            limiter.check_at(Action::Message, key, start).unwrap();
            assert!(
                limiter.check_at(Action::Message, key, start).is_err(),
                "{key}"
            );
        }
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let config = RateLimitsConfig {
            enabled: false,
            ..RateLimitsConfig::default()
        };
        let limiter = RateLimiter::new(&config);
        for _ in 0..1000 {
            limiter.check(Action::Login, "k").unwrap();
        }
    }
}
