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
use serde::Deserialize;
use serde_json::Value;

use super::WhatsAppBridge;
use crate::signature::{self, same_secret};

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
        .is_some_and(|t| same_secret(t.as_bytes(), expected));
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
    if !signature::verify(&bridge.config.whatsapp.app_secret, &body, signature) {
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
