//! The WhatsApp Business Cloud API as the bridge uses it: sending messages with the bearer
//! token, and reading Graph errors into "refused for good" (with a reason a person can read) or
//! "try again later". It knows nothing of Matrix.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Meta refused the message; sending it again would be refused too.
    Refused { code: i64, reason: String },
    /// The network or Meta failed; a retry may succeed.
    Transient(String),
}

/// A Graph API client for one business phone number.
#[derive(Clone)]
pub struct CloudApi {
    http: reqwest::Client,
    graph_url: String,
    phone_number_id: String,
    access_token: String,
}

impl CloudApi {
    /// `graph_url` is the versioned base, e.g. `https://graph.facebook.com/v21.0`.
    pub fn new(
        graph_url: &str,
        phone_number_id: &str,
        access_token: &str,
    ) -> Result<CloudApi, String> {
        Ok(CloudApi {
            http: http_client()?,
            graph_url: graph_url.trim_end_matches('/').to_owned(),
            phone_number_id: phone_number_id.to_owned(),
            access_token: access_token.to_owned(),
        })
    }

    /// Sends a free-form text message to `to` (a WhatsApp id); answers the new wamid.
    pub async fn send_text(&self, to: &str, body: &str) -> Result<String, SendError> {
        self.send(&text_message(to, body)).await
    }

    /// `POST /{phone-number-id}/messages` with `message`; answers the wamid.
    pub async fn send(&self, message: &Value) -> Result<String, SendError> {
        let url = format!("{}/{}/messages", self.graph_url, self.phone_number_id);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .json(message)
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("Cloud API unreachable: {e}")))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| SendError::Transient(format!("Cloud API answer unreadable: {e}")))?;
        if status.is_success() {
            return answer["messages"][0]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| {
                    SendError::Transient("Cloud API answer without a message id".into())
                });
        }
        Err(graph_error(status.as_u16(), &answer))
    }
}

impl CloudApi {
    /// Uploads media for sending: `POST /{phone-number-id}/media` (multipart `messaging_product`,
    /// `type`, `file`); answers the media id.
    pub async fn upload(
        &self,
        bytes: &[u8],
        mime_type: &str,
        filename: &str,
    ) -> Result<String, SendError> {
        let boundary = format!("plexus-whatsapp-{:016x}", rand::random::<u64>());
        let body = multipart_body(&boundary, bytes, mime_type, filename);
        let url = format!("{}/{}/media", self.graph_url, self.phone_number_id);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("Cloud API unreachable: {e}")))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| SendError::Transient(format!("Cloud API answer unreadable: {e}")))?;
        if status.is_success() {
            return answer["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| SendError::Transient("media upload answered no id".into()));
        }
        Err(graph_error(status.as_u16(), &answer))
    }
}

/// A `multipart/form-data` body with the three fields of a media upload.
fn multipart_body(boundary: &str, bytes: &[u8], mime_type: &str, filename: &str) -> Vec<u8> {
    // Quotes and line breaks would break the header; nothing else needs escaping.
    let filename: String = filename
        .chars()
        .map(|c| {
            if matches!(c, '"' | '\r' | '\n' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (name, value) in [("messaging_product", "whatsapp"), ("type", mime_type)] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// Media received from WhatsApp.
#[derive(Debug, Clone)]
pub struct Download {
    pub bytes: Vec<u8>,
    pub mime_type: String,
}

impl CloudApi {
    /// Fetches an inbound media object: `GET /{media-id}` for its short-lived URL, then the
    /// bytes from that URL (the bearer token again).
    pub async fn download(&self, media_id: &str) -> Result<Download, String> {
        if media_id.is_empty() || !media_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("invalid media id".into());
        }
        let url = format!("{}/{media_id}", self.graph_url);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.access_token)
            .send()
            .await
            .map_err(|e| format!("media lookup: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("media lookup answered {}", response.status()));
        }
        let info: Value = response
            .json()
            .await
            .map_err(|e| format!("media lookup: {e}"))?;
        let Some(location) = info["url"].as_str() else {
            return Err("media lookup answered no url".into());
        };
        let response = self
            .http
            .get(location)
            .bearer_auth(&self.access_token)
            .send()
            .await
            .map_err(|e| format!("media download: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("media download answered {}", response.status()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("media download: {e}"))?;
        Ok(Download {
            bytes: bytes.to_vec(),
            mime_type: info["mime_type"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_owned(),
        })
    }
}

/// The body of a free-form text message.
pub fn text_message(to: &str, body: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": body},
    })
}

/// Reads a Graph error object: server errors, throttling and token trouble are worth a retry
/// (by the homeserver re-sending the transaction); everything else is final.
pub fn graph_error(status: u16, answer: &Value) -> SendError {
    let error = &answer["error"];
    let code = error["code"].as_i64().unwrap_or_default();
    let details = error["error_data"]["details"]
        .as_str()
        .or_else(|| error["message"].as_str())
        .unwrap_or("unknown error");
    let transient = status >= 500
        || matches!(
            code,
            0 | 190 | 4 | 80007 | 130429 | 131000 | 131016 | 131048 | 131056
        );
    if transient {
        return SendError::Transient(format!("Cloud API error {code}: {details}"));
    }
    SendError::Refused {
        code,
        reason: reason_for(code, details),
    }
}

/// What the room is told for a refused message.
pub fn reason_for(code: i64, details: &str) -> String {
    match code {
        131047 => "more than 24 hours have passed since the contact last wrote, so WhatsApp only \
                   allows template messages until they write again (error 131047)"
            .into(),
        131026 => "the contact cannot receive it: not on WhatsApp, or they blocked this number \
                   (error 131026)"
            .into(),
        132001 => format!("the template is not approved (error 132001): {details}"),
        _ => format!("WhatsApp refused it (error {code}): {details}"),
    }
}

/// rustls with ring and the Mozilla roots.
fn http_client() -> Result<reqwest::Client, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_error_is_final_and_explained() {
        let answer =
            json!({"error": {"code": 131047, "message": "(#131047) Re-engagement message"}});
        match graph_error(400, &answer) {
            SendError::Refused { code, reason } => {
                assert_eq!(code, 131047);
                assert!(reason.contains("24 hours"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttling_is_retried() {
        let answer = json!({"error": {"code": 130429}});
        assert!(matches!(graph_error(400, &answer), SendError::Transient(_)));
    }
}
