//! The webhook endpoint Meta calls: the verification handshake (`GET /webhook`) and signed
//! notifications (`POST /webhook`). The signature is checked on the raw bytes before anything is
//! parsed; an unsigned or forged body is answered 401 and never looked at again.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::WhatsAppBridge;

/// The webhook router (`/webhook`), to be served on its own listener.
pub fn router(bridge: Arc<WhatsAppBridge>) -> Router {
    Router::new()
        .route("/webhook", get(verify).post(notify))
        .with_state(bridge)
}

#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// GET /webhook?hub.mode=subscribe&hub.verify_token=…&hub.challenge=… — echoes the challenge.
async fn verify(
    State(bridge): State<Arc<WhatsAppBridge>>,
    Query(query): Query<Handshake>,
) -> Response {
    let expected = bridge.config.whatsapp.verify_token.as_bytes();
    let token_ok = query
        .verify_token
        .as_deref()
        .is_some_and(|t| constant_time_eq(t.as_bytes(), expected));
    match (query.mode.as_deref(), token_ok, query.challenge) {
        (Some("subscribe"), true, Some(challenge)) => (StatusCode::OK, challenge).into_response(),
        _ => StatusCode::FORBIDDEN.into_response(),
    }
}

/// POST /webhook — a signed notification.
async fn notify(
    State(bridge): State<Arc<WhatsAppBridge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !signature_valid(&bridge.config.whatsapp.app_secret, &body, signature) {
        tracing::warn!("webhook refused: missing or invalid X-Hub-Signature-256");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        // Signed but not JSON: retrying will not help.
        return StatusCode::BAD_REQUEST.into_response();
    };
    match bridge.handle_webhook(&payload).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => {
            // Meta retries a non-2xx answer; what was bridged already is not bridged again.
            tracing::warn!(%error, "webhook handling failed; Meta will retry");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` with `app_secret`, compared
/// in constant time.
pub fn signature_valid(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_on_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let good = sign("s3cret", body);
        assert!(signature_valid("s3cret", body, &good));
        assert!(!signature_valid("other", body, &good));
        assert!(!signature_valid("s3cret", b"{ \"object\":1}", &good));
        assert!(!signature_valid("s3cret", body, ""));
        assert!(!signature_valid("s3cret", body, "sha256=zz"));
        assert!(!signature_valid(
            "s3cret",
            body,
            good.trim_start_matches("sha256=")
        ));
    }
}
