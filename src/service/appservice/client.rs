//! The homeserver → appservice HTTP client: requests to a registration's `url` under
//! `/_matrix/app/v1`, with `Authorization: Bearer <hs_token>` and a timeout per call. Queries
//! (users, aliases, third-party lookups) and pings go through here; each caller decides what a
//! failure means for its own request.
//!
//! Redirects are not followed (an appservice's answer must come from its registered URL).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value as JsonValue;

use super::Registration;

/// How long a query may take: the user's request waits on it.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of an error answer's body is kept (it is handed to the pinging appservice).
const MAX_ERROR_BODY: usize = 4096;

/// Why a call to an appservice gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the appservice {0} has no url")]
    NoUrl(String),
    #[error("the appservice did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the appservice could not be reached: {0}")]
    Connection(String),
    /// A non-2xx answer, with (the start of) its body.
    #[error("the appservice answered {status}")]
    Status { status: u16, body: String },
    #[error("the appservice's answer is not the JSON expected: {0}")]
    BadAnswer(String),
}

/// The shared HTTP client, built on first use.
#[derive(Debug, Default)]
pub struct AppserviceClient {
    http: OnceLock<reqwest::Client>,
}

impl AppserviceClient {
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("plexus/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        })
    }

    /// Sends `method` to `path` (starting with `/_matrix/app/`, query included) of the
    /// registration's `url` and returns the 2xx answer's body parsed as JSON (`null` when empty).
    pub async fn call(
        &self,
        registration: &Arc<Registration>,
        method: reqwest::Method,
        path: &str,
        body: Option<&JsonValue>,
        timeout: Duration,
    ) -> Result<JsonValue, CallError> {
        self.call_timed(registration, method, path, body, timeout)
            .await
            .map(|(answer, _)| answer)
    }

    /// Like [`AppserviceClient::call`], also saying how long the appservice took.
    pub async fn call_timed(
        &self,
        registration: &Arc<Registration>,
        method: reqwest::Method,
        path: &str,
        body: Option<&JsonValue>,
        timeout: Duration,
    ) -> Result<(JsonValue, Duration), CallError> {
        let Some(url) = &registration.url else {
            return Err(CallError::NoUrl(registration.id.clone()));
        };
        let endpoint = format!("{}{path}", url.trim_end_matches('/'));
        let mut request = self
            .http()
            .request(method, endpoint)
            .bearer_auth(&registration.hs_token)
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| classify(e, timeout))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| classify(e, timeout))?;
        let took = started.elapsed();
        if !status.is_success() {
            let end = bytes.len().min(MAX_ERROR_BODY);
            return Err(CallError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..end]).into_owned(),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((JsonValue::Null, took));
        }
        let answer =
            serde_json::from_slice(&bytes).map_err(|e| CallError::BadAnswer(e.to_string()))?;
        Ok((answer, took))
    }

    pub async fn get_json(
        &self,
        registration: &Arc<Registration>,
        path: &str,
        timeout: Duration,
    ) -> Result<JsonValue, CallError> {
        self.call(registration, reqwest::Method::GET, path, None, timeout)
            .await
    }

    pub async fn post_json(
        &self,
        registration: &Arc<Registration>,
        path: &str,
        body: &JsonValue,
        timeout: Duration,
    ) -> Result<JsonValue, CallError> {
        self.call(
            registration,
            reqwest::Method::POST,
            path,
            Some(body),
            timeout,
        )
        .await
    }

    pub async fn put_json(
        &self,
        registration: &Arc<Registration>,
        path: &str,
        body: &JsonValue,
        timeout: Duration,
    ) -> Result<JsonValue, CallError> {
        self.call(
            registration,
            reqwest::Method::PUT,
            path,
            Some(body),
            timeout,
        )
        .await
    }
}

fn classify(error: reqwest::Error, timeout: Duration) -> CallError {
    if error.is_timeout() {
        CallError::Timeout(timeout)
    } else {
        CallError::Connection(error.to_string())
    }
}

/// Percent-encodes one path segment (user ids and aliases hold `@`, `#` and `:`).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            super::encode_segment("#_a_b:care.example"),
            "%23_a_b%3Acare.example"
        );
    }
}
