//! The simulator's world: contacts with their customer-service windows and opt-outs, the
//! messages exchanged, stored media, the calls received, the webhooks sent, forced errors, the
//! rate-limit buckets and the groups the number is in. Plain data behind one mutex, never held
//! across an await; time comes from a controllable clock so tests can step past the 24-hour
//! window.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// The length of the customer-service window, in seconds.
pub const WINDOW_SECONDS: i64 = 24 * 60 * 60;
/// How long a media download URL stays valid, in seconds (Meta: about five minutes).
pub const MEDIA_URL_SECONDS: i64 = 5 * 60;
/// The pair rate: one message per six seconds to one user, with bursts of up to 45.
const PAIR_BURST: f64 = 45.0;
const PAIR_REFILL_PER_MS: f64 = 1.0 / 6000.0;
/// Throughput: 80 messages per second per business number.
const THROUGHPUT_BURST: f64 = 80.0;
const THROUGHPUT_REFILL_PER_MS: f64 = 80.0 / 1000.0;

/// A clock that runs with real time plus an offset tests can move forward (or back).
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real + self.offset_ms
    }

    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    pub fn advance(&mut self, seconds: i64) {
        self.offset_ms += seconds * 1000;
    }
}

/// A WhatsApp user known to the simulator.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub wa_id: String,
    pub name: String,
    /// When the contact last wrote to the business (Unix seconds): the window's start.
    pub last_inbound: Option<i64>,
    /// The contact blocked the business / opted out: sends to them fail with 131026.
    pub opted_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A message exchanged through the simulated number.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: String,
    pub wa_id: String,
    pub direction: Direction,
    pub timestamp: i64,
    /// The message object: the webhook's for inbound, the request body for outbound.
    pub body: Value,
    /// Inbound messages the business marked read.
    pub read: bool,
    /// The group the message was written in or sent to; `wa_id` is then the writer (inbound)
    /// or the group id (outbound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

/// A WhatsApp group the business number belongs to (see `groups`).
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub id: String,
    pub subject: String,
    pub description: Option<String>,
    /// The WhatsApp ids of the participants other than the business.
    pub participants: Vec<String>,
    pub creation_timestamp: i64,
}

/// A stored media object.
#[derive(Debug, Clone)]
pub struct Media {
    pub id: String,
    pub bytes: Vec<u8>,
    pub mime_type: String,
    pub sha256: String,
    pub filename: Option<String>,
    /// Who put it there: `business` (uploaded through the Graph API) or `contact` (inbound).
    pub origin: &'static str,
    pub deleted: bool,
}

/// One request received on the Graph API surface, as the control API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    /// The JSON body when it was JSON, else the body as (lossy) text.
    pub body: Value,
    pub status: u16,
    pub response: Value,
}

/// One webhook the simulator sent, with every delivery attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub seq: u64,
    pub body: Value,
    pub signature: String,
    /// The HTTP status of each attempt, or 0 when the connection failed.
    pub attempts: Vec<u16>,
    pub delivered: bool,
    pub abandoned: bool,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    fn take(&mut self, now_ms: i64, burst: f64, refill_per_ms: f64) -> bool {
        let elapsed = (now_ms - self.at_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * refill_per_ms).min(burst);
        self.at_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub clock: Clock,
    pub contacts: HashMap<String, Contact>,
    pub groups: HashMap<String, Group>,
    pub messages: HashMap<String, Message>,
    pub media: HashMap<String, Media>,
    pub calls: Vec<Call>,
    pub webhooks: Vec<Webhook>,
    pub webhook_url: Option<String>,
    /// Approved template names.
    pub templates: BTreeSet<String>,
    /// How many body parameters (`{{1}}`, `{{2}}`, …) each template has; none when absent.
    pub template_body_params: HashMap<String, usize>,
    /// Error codes the next sends answer with, one per send.
    pub forced: VecDeque<u32>,
    /// How long the answer to a message send is held back after the send took effect.
    pub latency_ms: u64,
    pair_buckets: HashMap<String, Bucket>,
    throughput: Option<Bucket>,
}

impl State {
    /// The contact for `wa_id`, created (nameless, window closed) if unknown.
    pub fn contact_mut(&mut self, wa_id: &str) -> &mut Contact {
        self.contacts
            .entry(wa_id.to_owned())
            .or_insert_with(|| Contact {
                wa_id: wa_id.to_owned(),
                name: wa_id.to_owned(),
                last_inbound: None,
                opted_out: false,
            })
    }

    /// Whether the business may send free-form messages to `wa_id` now: the contact wrote
    /// within the last 24 hours. Business messages never extend the window.
    pub fn window_open(&self, wa_id: &str) -> bool {
        let now = self.clock.now();
        self.contacts
            .get(wa_id)
            .and_then(|c| c.last_inbound)
            .is_some_and(|at| now - at < WINDOW_SECONDS && now >= at)
    }

    /// Takes one send from the throughput and pair-rate buckets; the error code when either is
    /// empty. A refused send consumes nothing.
    pub fn take_rate(&mut self, wa_id: &str) -> Result<(), u32> {
        let now = self.clock.now_ms();
        let throughput = self.throughput.get_or_insert(Bucket {
            tokens: THROUGHPUT_BURST,
            at_ms: now,
        });
        if !throughput.take(now, THROUGHPUT_BURST, THROUGHPUT_REFILL_PER_MS) {
            return Err(130429);
        }
        let pair = self.pair_buckets.entry(wa_id.to_owned()).or_insert(Bucket {
            tokens: PAIR_BURST,
            at_ms: now,
        });
        if !pair.take(now, PAIR_BURST, PAIR_REFILL_PER_MS) {
            if let Some(t) = self.throughput.as_mut() {
                t.tokens += 1.0;
            }
            return Err(131056);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_opens_on_inbound_and_closes_after_24_hours() {
        let mut state = State::default();
        assert!(!state.window_open("15550001111"), "unknown contact");
        let now = state.clock.now();
        state.contact_mut("15550001111").last_inbound = Some(now);
        assert!(state.window_open("15550001111"));
        state.clock.advance(WINDOW_SECONDS - 2);
        assert!(state.window_open("15550001111"));
        state.clock.advance(2);
        assert!(
            !state.window_open("15550001111"),
            "exactly 24 h later it is closed"
        );
    }

    #[test]
    fn pair_rate_allows_a_burst_then_one_per_six_seconds() {
        let mut state = State::default();
        for _ in 0..45 {
            assert_eq!(state.take_rate("1555"), Ok(()));
        }
        assert_eq!(state.take_rate("1555"), Err(131056));
        assert_eq!(
            state.take_rate("1666"),
            Ok(()),
            "other pairs are independent"
        );
        state.clock.advance(6);
        assert_eq!(state.take_rate("1555"), Ok(()));
        assert_eq!(state.take_rate("1555"), Err(131056));
    }

    #[test]
    fn throughput_limits_the_number() {
        let mut state = State::default();
        let mut refused = None;
        for i in 0..100 {
            if let Err(code) = state.take_rate(&format!("1{i:05}")) {
                refused = Some((i, code));
                break;
            }
        }
        let (at, code) = refused.expect("some send refused");
        assert_eq!(code, 130429);
        assert!(at >= 80, "the first 80 pass (refused at {at})");
    }
}
