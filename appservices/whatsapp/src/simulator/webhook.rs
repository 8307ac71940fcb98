//! Webhooks to the bridge: the `whatsapp_business_account` envelope, the
//! `X-Hub-Signature-256` signature over the exact bytes sent, the verification handshake, and a
//! delivery worker that retries with exponential back-off while the bridge answers non-2xx (as
//! Meta does, though Meta keeps trying for up to seven days).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Shared;
use super::ids;
use super::state::Webhook;
use crate::signature::sign;

/// The whole webhook body around one `value` of the `messages` field.
pub fn envelope(waba_id: &str, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "changes": [{"field": "messages", "value": value}],
        }],
    })
}

/// Queues `value` for delivery; returns the webhook's sequence number.
pub(crate) fn enqueue(shared: &Arc<Shared>, value: Value) -> u64 {
    let body = envelope(&shared.config.waba_id, value);
    let raw = serde_json::to_vec(&body).unwrap_or_default();
    let signature = sign(&shared.config.app_secret, &raw);
    let seq = {
        let mut state = shared.lock();
        let seq = state.webhooks.len() as u64 + 1;
        state.webhooks.push(Webhook {
            seq,
            body,
            signature,
            attempts: Vec::new(),
            delivered: false,
            abandoned: false,
        });
        seq
    };
    // The worker lives as long as the simulator; a closed channel means it is shutting down.
    let _ = shared.webhook_queue.send((seq, raw));
    seq
}

/// Delivers queued webhooks one at a time, in order; a webhook the bridge refuses is retried
/// after 1, 2, 4… times `retry_base` and holds back the ones after it, up to `max_attempts`.
pub(crate) async fn worker(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
) {
    while let Some((seq, raw)) = queue.recv().await {
        let mut delay = shared.config.retry_base;
        for attempt in 1..=shared.config.max_attempts {
            let (url, signature) = {
                let state = shared.lock();
                let signature = state.webhooks[(seq - 1) as usize].signature.clone();
                (state.webhook_url.clone(), signature)
            };
            // With no callback configured nothing is sent, as with Meta; the record stays.
            let Some(url) = url else { break };
            let status = match shared
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .header("user-agent", "facebookexternalua")
                .body(raw.clone())
                .send()
                .await
            {
                Ok(response) => response.status().as_u16(),
                Err(error) => {
                    tracing::debug!(webhook.seq = seq, %error, "webhook delivery failed");
                    0
                }
            };
            let delivered = (200..300).contains(&status);
            {
                let mut state = shared.lock();
                let record = &mut state.webhooks[(seq - 1) as usize];
                record.attempts.push(status);
                record.delivered = delivered;
                record.abandoned = !delivered && attempt == shared.config.max_attempts;
            }
            shared.webhook_progress.notify_waiters();
            if delivered {
                break;
            }
            if attempt < shared.config.max_attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3600));
            }
        }
    }
}

/// The outcome of running the verification handshake against the bridge.
#[derive(Debug, Serialize)]
pub struct Handshake {
    pub status: u16,
    pub body: String,
    pub challenge: String,
    /// 200 with exactly the challenge as the body.
    pub verified: bool,
}

/// Sends `GET <callback>?hub.mode=…&hub.verify_token=…&hub.challenge=<n>` as Meta does when a
/// callback URL is configured.
pub(crate) async fn handshake(
    shared: &Shared,
    url: &str,
    mode: &str,
    verify_token: &str,
) -> Result<Handshake, String> {
    let challenge = rand::random_range(100_000_000u64..10_000_000_000).to_string();
    let mut callback = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    callback
        .query_pairs_mut()
        .append_pair("hub.mode", mode)
        .append_pair("hub.verify_token", verify_token)
        .append_pair("hub.challenge", &challenge);
    let response = shared
        .http
        .get(callback)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok(Handshake {
        status,
        verified: status == 200 && body == challenge,
        body,
        challenge,
    })
}

/// A `conversation` object for a status, as Meta attaches to `sent` and `delivered`.
pub fn conversation(origin: &str, expires: i64) -> Value {
    json!({
        "id": ids::token(32).to_lowercase(),
        "expiration_timestamp": expires.to_string(),
        "origin": {"type": origin},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_documented_shape() {
        let body = envelope("102290129340398", json!({"messaging_product": "whatsapp"}));
        assert_eq!(body["object"], "whatsapp_business_account");
        assert_eq!(body["entry"][0]["id"], "102290129340398");
        assert_eq!(body["entry"][0]["changes"][0]["field"], "messages");
        assert_eq!(
            body["entry"][0]["changes"][0]["value"]["messaging_product"],
            "whatsapp"
        );
    }
}
