//! The WhatsApp Business Cloud API as the bridge uses it: sending messages with the bearer
//! token, and reading Graph errors into "refused for good" (with a reason a person can read),
//! "try again soon" (retried here, see [`super::retry`]), "try again later" or "it may have
//! gone" (see [`CallError`]). It knows nothing of Matrix.

use std::time::Duration;

use serde_json::{Value, json};

use super::retry::Backoff;

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Meta refused the message; sending it again would be refused too.
    Refused { code: i64, reason: String },
    /// The network or Meta failed; a retry may succeed.
    Transient(String),
}

/// Why one call (or the retries of one call) did not go through, in more detail than
/// [`SendError`]: what the bridge needs to decide between retrying, giving the homeserver the
/// transaction back, and reconciling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Meta refused the request; it would be refused again.
    Refused { code: i64, reason: String },
    /// Throttled, or Meta failed, or no connection: nothing was sent and a retry soon may work.
    Retryable(String),
    /// Nothing was sent, and retrying at once will not help (token trouble, the spam limit, or
    /// retries exhausted): worth trying again much later.
    Transient(String),
    /// The request may have reached Meta but no answer came back (a timeout, a cut connection,
    /// an unreadable success): sending again could deliver it twice.
    InDoubt(String),
}

impl From<CallError> for SendError {
    fn from(error: CallError) -> SendError {
        match error {
            CallError::Refused { code, reason } => SendError::Refused { code, reason },
            CallError::Retryable(reason)
            | CallError::Transient(reason)
            | CallError::InDoubt(reason) => SendError::Transient(reason),
        }
    }
}

/// A Graph API client for one business phone number.
#[derive(Clone)]
pub struct CloudApi {
    http: reqwest::Client,
    graph_url: String,
    phone_number_id: String,
    access_token: String,
    backoff: Backoff,
}

impl CloudApi {
    /// `graph_url` is the versioned base, e.g. `https://graph.facebook.com/v21.0`.
    pub fn new(
        graph_url: &str,
        phone_number_id: &str,
        access_token: &str,
    ) -> Result<CloudApi, String> {
        Ok(CloudApi {
            http: crate::https::client(Duration::from_secs(30))?,
            graph_url: graph_url.trim_end_matches('/').to_owned(),
            phone_number_id: phone_number_id.to_owned(),
            access_token: access_token.to_owned(),
            backoff: Backoff::default(),
        })
    }

    /// The same client, retrying as `backoff` says.
    pub fn with_backoff(mut self, backoff: Backoff) -> CloudApi {
        self.backoff = backoff;
        self
    }

    /// Sends a free-form text message to `to` (a WhatsApp id); answers the new wamid.
    pub async fn send_text(&self, to: &str, body: &str) -> Result<String, SendError> {
        self.send(&text_message(to, body)).await
    }

    /// `POST /{phone-number-id}/messages` with `message`, retried as the back-off says;
    /// answers the wamid.
    pub async fn send(&self, message: &Value) -> Result<String, SendError> {
        self.send_message(message).await.map_err(SendError::from)
    }

    /// Like [`CloudApi::send`], telling why it failed in detail.
    pub async fn send_message(&self, message: &Value) -> Result<String, CallError> {
        self.backoff.run("send", || self.send_once(message)).await
    }

    /// One `POST /{phone-number-id}/messages`.
    async fn send_once(&self, message: &Value) -> Result<String, CallError> {
        let url = format!("{}/{}/messages", self.graph_url, self.phone_number_id);
        let request = self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .json(message);
        let answer = call(request).await?;
        answer["messages"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CallError::InDoubt("Cloud API answer without a message id".into()))
    }
}

/// Makes one Graph request and reads its answer: the JSON of a success, or why it failed.
async fn call(request: reqwest::RequestBuilder) -> Result<Value, CallError> {
    let response = request.send().await.map_err(|e| {
        // Only a connection never made is sure to have sent nothing.
        if e.is_connect() {
            CallError::Retryable(format!("Cloud API unreachable: {e}"))
        } else {
            CallError::InDoubt(format!("Cloud API request cut short: {e}"))
        }
    })?;
    let status = response.status();
    let answer: Result<Value, _> = response.json().await;
    match answer {
        Ok(answer) if status.is_success() => Ok(answer),
        Ok(answer) => Err(graph_error(status.as_u16(), &answer)),
        Err(e) if status.is_success() => Err(CallError::InDoubt(format!(
            "Cloud API answer unreadable: {e}"
        ))),
        Err(_) if status.is_server_error() || status.as_u16() == 429 => Err(CallError::Retryable(
            format!("Cloud API answered HTTP {status}"),
        )),
        Err(_) => Err(CallError::Transient(format!(
            "Cloud API answered HTTP {status}"
        ))),
    }
}

impl CloudApi {
    /// Uploads media for sending: `POST /{phone-number-id}/media` (multipart `messaging_product`,
    /// `type`, `file`), retried as the back-off says; answers the media id. An upload whose
    /// answer was lost is simply made again: a media object nobody sends costs nothing.
    pub async fn upload(
        &self,
        bytes: &[u8],
        mime_type: &str,
        filename: &str,
    ) -> Result<String, SendError> {
        let once = || async move {
            match self.upload_once(bytes, mime_type, filename).await {
                Err(CallError::InDoubt(reason)) => Err(CallError::Retryable(reason)),
                outcome => outcome,
            }
        };
        self.backoff
            .run("upload", once)
            .await
            .map_err(SendError::from)
    }

    async fn upload_once(
        &self,
        bytes: &[u8],
        mime_type: &str,
        filename: &str,
    ) -> Result<String, CallError> {
        let boundary = format!("plexus-whatsapp-{:016x}", rand::random::<u64>());
        let body = multipart_body(&boundary, bytes, mime_type, filename);
        let url = format!("{}/{}/media", self.graph_url, self.phone_number_id);
        let request = self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let answer = call(request).await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CallError::InDoubt("media upload answered no id".into()))
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

impl CloudApi {
    /// `GET /{phone-number-id}`: the business number as Meta knows it (`verified_name`,
    /// `display_phone_number`, `quality_rating`, …). The bot's `status` uses it to tell whether
    /// the Cloud API is reachable and the token accepted.
    pub async fn phone_number(&self) -> Result<Value, SendError> {
        let url = format!("{}/{}", self.graph_url, self.phone_number_id);
        let request = self.http.get(&url).bearer_auth(&self.access_token);
        call(request).await.map_err(SendError::from)
    }

    /// `GET /{id}`: a Graph node by id, such as a group (`subject`, `participants`, …).
    pub async fn node(&self, id: &str) -> Result<Value, SendError> {
        let url = format!("{}/{}", self.graph_url, id);
        let request = self.http.get(&url).bearer_auth(&self.access_token);
        call(request).await.map_err(SendError::from)
    }
}

impl CloudApi {
    /// Marks an inbound message, and the contact's earlier ones, read (the contact sees blue
    /// ticks): `POST /{phone-number-id}/messages` with `{"messaging_product": "whatsapp",
    /// "status": "read", "message_id"}`, answered `{"success": true}`. Repeating it is harmless.
    pub async fn mark_read(&self, wamid: &str) -> Result<(), CallError> {
        let url = format!("{}/{}/messages", self.graph_url, self.phone_number_id);
        let body = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid});
        let request = self
            .http
            .post(&url)
            .bearer_auth(&self.access_token)
            .json(&body);
        call(request).await.map(|_| ())
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

/// Reads a Graph error object. Retried in the bridge: the throttling codes (4 and 80007, call
/// limits; 130429, throughput; 131056, pair rate), Meta's own failures (1, 2, 131000, 131016)
/// and any 5xx or 429 answer. Worth a retry only much later (by the homeserver re-sending the
/// transaction): token trouble (0, 190) and the spam limit (131048, lifted by quality, not
/// time). Everything else is final.
pub fn graph_error(status: u16, answer: &Value) -> CallError {
    let error = &answer["error"];
    let code = error["code"].as_i64().unwrap_or_default();
    let details = error["error_data"]["details"]
        .as_str()
        .or_else(|| error["message"].as_str())
        .unwrap_or("unknown error");
    let reason = format!("Cloud API error {code}: {details}");
    if status >= 500
        || status == 429
        || matches!(code, 1 | 2 | 4 | 80007 | 130429 | 131000 | 131016 | 131056)
    {
        return CallError::Retryable(reason);
    }
    if matches!(code, 0 | 190 | 131048) {
        return CallError::Transient(reason);
    }
    CallError::Refused {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_error_is_final_and_explained() {
        let answer =
            json!({"error": {"code": 131047, "message": "(#131047) Re-engagement message"}});
        match graph_error(400, &answer) {
            CallError::Refused { code, reason } => {
                assert_eq!(code, 131047);
                assert!(reason.contains("24 hours"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttling_and_meta_failures_are_retried_token_trouble_is_not() {
        for (status, code) in [
            (400, 4),
            (400, 80007),
            (400, 130429),
            (400, 131056),
            (500, 131000),
            (503, 131016),
            (502, 0),
            (429, 4),
        ] {
            let answer = json!({"error": {"code": code}});
            assert!(
                matches!(graph_error(status, &answer), CallError::Retryable(_)),
                "{status} {code}"
            );
        }
        for code in [190, 131048] {
            let answer = json!({"error": {"code": code}});
            assert!(matches!(graph_error(400, &answer), CallError::Transient(_)));
        }
    }
}
