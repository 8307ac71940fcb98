//! The Graph API surface: `POST /{version}/{phone-number-id}/messages`,
//! `POST /{version}/{phone-number-id}/media`, `GET|DELETE /{version}/{media-id}` and the
//! lookaside download URL. Every call is checked for the access token first, then for its
//! shape, then against the simulated world (media ids, context ids, templates, the window, rate
//! limits), and recorded with its answer for the control API.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::GraphError;
use super::state::{Call, Direction, MEDIA_URL_SECONDS, Media, Message};
use super::validate::{self, Send};
use super::{Shared, ids, multipart, webhook};
use crate::signature::{self, same_secret};

type Answer = Result<Value, GraphError>;

/// Media types the Cloud API accepts, with their size limits in bytes.
const MEDIA_LIMITS: &[(&str, usize)] = &[
    ("audio/aac", 16 << 20),
    ("audio/amr", 16 << 20),
    ("audio/mpeg", 16 << 20),
    ("audio/mp4", 16 << 20),
    ("audio/ogg", 16 << 20),
    ("image/jpeg", 5 << 20),
    ("image/png", 5 << 20),
    ("image/webp", 500 << 10),
    ("video/mp4", 16 << 20),
    ("video/3gpp", 16 << 20),
    ("text/plain", 100 << 20),
    ("application/pdf", 100 << 20),
    ("application/vnd.ms-excel", 100 << 20),
    ("application/msword", 100 << 20),
    ("application/vnd.ms-powerpoint", 100 << 20),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        100 << 20,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        100 << 20,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        100 << 20,
    ),
];

/// The size limit for a MIME type (parameters such as `; codecs=opus` ignored).
pub fn media_limit(mime: &str) -> Option<usize> {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    MEDIA_LIMITS
        .iter()
        .find(|(m, _)| *m == essence)
        .map(|(_, limit)| *limit)
}

/// The access token of a request: `Authorization: Bearer …` or `?access_token=`.
fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(
            value
                .strip_prefix("Bearer ")
                .unwrap_or(value)
                .trim()
                .to_owned(),
        );
    }
    // Decode the query as Graph does, `%XX` and `+` included.
    let url = reqwest::Url::parse(&format!("http://graph/?{}", query?)).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

fn authorize(shared: &Shared, headers: &HeaderMap, query: Option<&str>) -> Result<(), GraphError> {
    match token(headers, query) {
        None => Err(GraphError::missing_token()),
        Some(t) if same_secret(t.as_bytes(), shared.config.access_token.as_bytes()) => Ok(()),
        Some(_) => Err(GraphError::invalid_token()),
    }
}

/// `v<major>.<minor>`, as Graph versions are written.
fn check_version(version: &str, uri: &str) -> Result<(), GraphError> {
    let well_formed = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        });
    if well_formed {
        Ok(())
    } else {
        Err(unknown_path_error(uri))
    }
}

fn unknown_path_error(uri: &str) -> GraphError {
    GraphError {
        status: StatusCode::BAD_REQUEST,
        code: 2500,
        subcode: None,
        message: format!("Unknown path components: {uri}"),
        details: None,
    }
}

/// Records the call and turns the answer into a response.
fn finish(
    shared: &Shared,
    method: &Method,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: Value,
    answer: Answer,
) -> Response {
    let (status, response) = match answer {
        Ok(value) => (StatusCode::OK, value),
        Err(error) => (error.status, error.body()),
    };
    shared.lock().calls.push(Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        status: status.as_u16(),
        response: response.clone(),
    });
    (status, Json(response)).into_response()
}

/// POST /{version}/{phone-number-id}/messages
pub(crate) async fn send_message(
    State(shared): State<Arc<Shared>>,
    Path((version, phone_number_id)): Path<(String, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let recorded = json
        .clone()
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let answer = (|| {
        authorize(&shared, &headers, uri.query())?;
        check_version(&version, uri.path())?;
        if phone_number_id != shared.config.phone_number_id {
            return Err(GraphError::unknown_object("post", &phone_number_id));
        }
        let json = json.ok_or_else(|| GraphError::param("Invalid parameter"))?;
        match validate::send(&json)? {
            Send::Read { message_id } => mark_read(&shared, &message_id),
            Send::Message(outbound) => accept(&shared, outbound, json),
        }
    })();
    // Recorded before the latency: the call happened even if the caller is gone when the
    // answer would leave.
    late(
        &shared,
        finish(&shared, &method, &uri, &headers, recorded, answer),
    )
    .await
}

/// Holds an answer back for the configured latency (`PUT /_sim/latency`).
async fn late(shared: &Shared, response: Response) -> Response {
    let latency = shared.lock().latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    response
}

/// How long after its arrival an inbound message may be marked read.
const READ_WITHIN_SECONDS: i64 = 30 * 24 * 3600;

/// `status: read`: marks an inbound message, and the contact's earlier ones, read.
fn mark_read(shared: &Shared, message_id: &str) -> Answer {
    let mut state = shared.lock();
    let (wa_id, timestamp) = match state.messages.get(message_id) {
        Some(m) if m.direction == Direction::Inbound => (m.wa_id.clone(), m.timestamp),
        _ => {
            return Err(GraphError::new(
                131009,
                format!("Invalid message_id '{message_id}': no message received with this id"),
            ));
        }
    };
    // Meta marks messages read only within 30 days of their arrival.
    if state.clock.now() - timestamp > READ_WITHIN_SECONDS {
        return Err(GraphError::new(
            131009,
            format!("Invalid message_id '{message_id}': received more than 30 days ago"),
        ));
    }
    for message in state.messages.values_mut() {
        if message.direction == Direction::Inbound
            && message.wa_id == wa_id
            && message.timestamp <= timestamp
        {
            message.read = true;
        }
    }
    Ok(json!({"success": true}))
}

/// Checks a well-formed message against the world and, if it passes, accepts it.
fn accept(shared: &Arc<Shared>, outbound: validate::Outbound, body: Value) -> Answer {
    let (id, failure, auto) = {
        let mut state = shared.lock();
        if outbound.wa_id == shared.config.display_phone_number {
            return Err(GraphError::new(131021, "Recipient cannot be sender"));
        }
        if let Some(code) = state.forced.pop_front() {
            return Err(forced_error(code));
        }
        // Meta documents no error for an unknown group; 131009 (an invalid parameter) is ours.
        if outbound.group && !state.groups.contains_key(&outbound.wa_id) {
            return Err(GraphError::new(
                131009,
                format!("Invalid 'to' parameter: no group '{}'", outbound.wa_id),
            ));
        }
        if let Some(media_id) = &outbound.media_id
            && state.media.get(media_id).is_none_or(|m| m.deleted)
        {
            return Err(GraphError::new(
                131009,
                format!("Invalid media id '{media_id}'"),
            ));
        }
        for (what, id) in [
            ("context.message_id", &outbound.context),
            ("reaction.message_id", &outbound.reaction_to),
        ] {
            if let Some(id) = id
                && state
                    .messages
                    .get(id)
                    .is_none_or(|m| m.group_id.as_deref().unwrap_or(&m.wa_id) != outbound.wa_id)
            {
                return Err(GraphError::new(
                    131009,
                    format!("Invalid {what} '{id}' for this recipient"),
                ));
            }
        }
        if let Some((name, language)) = &outbound.template
            && !state.templates.contains(name)
        {
            return Err(GraphError::new(
                132001,
                format!("template name ({name}) does not exist in {language}"),
            ));
        }
        if let Some((name, _)) = &outbound.template {
            let expected = state.template_body_params.get(name).copied().unwrap_or(0);
            let given = validate::template_body_parameters(&body);
            if given != expected {
                return Err(GraphError::new(
                    132000,
                    format!(
                        "body: number of localizable_params ({given}) does not match the expected number of params ({expected})"
                    ),
                ));
            }
        }
        // Meta's group pages state no customer-service window for groups: none is enforced.
        if outbound.template.is_none() && !outbound.group && !state.window_open(&outbound.wa_id) {
            return Err(GraphError::new(
                131047,
                "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
            ));
        }
        if let Err(code) = state.take_rate(&outbound.wa_id) {
            return Err(forced_error(code));
        }
        let id = ids::wamid(&outbound.wa_id);
        let timestamp = state.clock.now();
        state.messages.insert(
            id.clone(),
            Message {
                id: id.clone(),
                wa_id: outbound.wa_id.clone(),
                direction: Direction::Outbound,
                timestamp,
                body,
                read: false,
                group_id: outbound.group.then(|| outbound.wa_id.clone()),
            },
        );
        // Unknown numbers and contacts who blocked the business are only found out on
        // delivery: the send is accepted and a failed status follows.
        let failure = match state.contacts.get(&outbound.wa_id) {
            _ if outbound.group => None,
            None => Some("Message failed to send because the recipient is not a WhatsApp user"),
            Some(c) if c.opted_out => {
                Some("Message could not be delivered: the recipient has blocked this business")
            }
            Some(_) => None,
        };
        (id, failure, shared.config.auto_statuses)
    };
    let origin = if outbound.template.is_some() {
        "utility"
    } else {
        "service"
    };
    if let Some(details) = failure {
        let value = super::control::status_value(
            shared,
            &id,
            &outbound.wa_id,
            "failed",
            &[(131026, details.to_owned())],
            origin,
        );
        webhook::enqueue(shared, value);
    } else if auto {
        // Reactions the business sends only ever get `sent`.
        let statuses: &[&str] = if outbound.kind == "reaction" {
            &["sent"]
        } else {
            &["sent", "delivered"]
        };
        for status in statuses {
            let value =
                super::control::status_value(shared, &id, &outbound.wa_id, status, &[], origin);
            webhook::enqueue(shared, value);
        }
    }
    let mut message = json!({"id": id});
    if outbound.template.is_some() {
        message["message_status"] = json!("accepted");
    }
    // Meta's group pages show no send answer; a group has no `wa_id`, so `contacts` is left out.
    if outbound.group {
        return Ok(json!({"messaging_product": "whatsapp", "messages": [message]}));
    }
    Ok(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": outbound.input, "wa_id": outbound.wa_id}],
        "messages": [message],
    }))
}

fn forced_error(code: u32) -> GraphError {
    let details = match code {
        130429 => "Cloud API message throughput has been reached.",
        131056 => {
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."
        }
        131048 => {
            "Message failed to send because there are restrictions on how many messages can be sent from this phone number."
        }
        4 | 80007 => "Too many API calls.",
        _ => "",
    };
    GraphError::new(code, details)
}

/// POST /{version}/{phone-number-id}/media
pub(crate) async fn upload_media(
    State(shared): State<Arc<Shared>>,
    Path((version, phone_number_id)): Path<(String, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut recorded = json!({"bytes": body.len()});
    let answer = (|| {
        authorize(&shared, &headers, uri.query())?;
        check_version(&version, uri.path())?;
        if phone_number_id != shared.config.phone_number_id {
            return Err(GraphError::unknown_object("post", &phone_number_id));
        }
        let boundary = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(multipart::boundary)
            .ok_or_else(|| GraphError::param("Invalid parameter"))?;
        let parts = multipart::parse(&body, &boundary)
            .ok_or_else(|| GraphError::param("Invalid parameter"))?;
        let field = |name: &str| parts.iter().find(|p| p.name == name);
        let text = |name: &str| field(name).map(|p| String::from_utf8_lossy(&p.data).into_owned());
        recorded = json!({
            "messaging_product": text("messaging_product"),
            "type": text("type"),
            "file": field("file").map(|f| json!({"filename": f.filename, "content_type": f.content_type, "bytes": f.data.len()})),
        });
        let product = text("messaging_product")
            .ok_or_else(|| GraphError::param("The parameter messaging_product is required."))?;
        if product != "whatsapp" {
            return Err(GraphError::param(format!(
                "Param messaging_product must be one of {{WHATSAPP}} - got \"{product}\"."
            )));
        }
        let file =
            field("file").ok_or_else(|| GraphError::param("The parameter file is required."))?;
        let mime_type =
            text("type").ok_or_else(|| GraphError::param("The parameter type is required."))?;
        let limit = media_limit(&mime_type)
            .ok_or_else(|| GraphError::new(131053, format!("Unsupported file type {mime_type}")))?;
        if file.data.is_empty() || file.data.len() > limit {
            return Err(GraphError::new(
                131053,
                format!(
                    "File size {} is outside the limit of {limit} bytes for {mime_type}",
                    file.data.len()
                ),
            ));
        }
        let id = ids::media_id();
        let media = Media {
            id: id.clone(),
            sha256: hex::encode(Sha256::digest(&file.data)),
            bytes: file.data.clone(),
            mime_type,
            filename: file.filename.clone(),
            origin: "business",
            deleted: false,
        };
        shared.lock().media.insert(id.clone(), media);
        Ok(json!({"id": id}))
    })();
    late(
        &shared,
        finish(&shared, &method, &uri, &headers, recorded, answer),
    )
    .await
}

/// The download URL of a media object, valid for five minutes of simulated time.
pub(crate) fn download_url(shared: &Shared, media_id: &str, now: i64) -> String {
    let expires = now + MEDIA_URL_SECONDS;
    let hash = url_hash(shared, media_id, expires);
    format!(
        "{}/whatsapp_business/attachments/?mid={media_id}&ext={expires}&hash={hash}",
        shared.base_url
    )
}

fn url_hash(shared: &Shared, media_id: &str, expires: i64) -> String {
    let mac = signature::hmac(
        &shared.config.app_secret,
        format!("{media_id}:{expires}").as_bytes(),
    );
    hex::encode(&mac[..16])
}

/// GET /{version}/{media-id}
pub(crate) async fn get_media(
    State(shared): State<Arc<Shared>>,
    Path((version, media_id)): Path<(String, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    let answer = (|| {
        authorize(&shared, &headers, uri.query())?;
        check_version(&version, uri.path())?;
        // The business phone number is a Graph node too: `GET /{phone-number-id}`.
        if media_id == shared.config.phone_number_id {
            return Ok(phone_number_node(&shared));
        }
        let state = shared.lock();
        // So is a group the number is in: `GET /{group-id}` (Meta's Groups query reference).
        if let Some(group) = state.groups.get(&media_id) {
            return Ok(super::groups::info(group));
        }
        let media = state
            .media
            .get(&media_id)
            .filter(|m| !m.deleted)
            .ok_or_else(|| GraphError::unknown_object("get", &media_id))?;
        Ok(json!({
            "messaging_product": "whatsapp",
            "url": download_url(&shared, &media_id, state.clock.now()),
            "mime_type": media.mime_type,
            "sha256": media.sha256,
            "file_size": media.bytes.len().to_string(),
            "id": media_id,
        }))
    })();
    finish(&shared, &method, &uri, &headers, Value::Null, answer)
}

/// The phone number node, with the fields Meta answers by default.
fn phone_number_node(shared: &Shared) -> Value {
    json!({
        "verified_name": "Simulated Business",
        "code_verification_status": "VERIFIED",
        "display_phone_number": format!("+{}", shared.config.display_phone_number),
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "id": shared.config.phone_number_id,
    })
}

/// DELETE /{version}/{media-id}
pub(crate) async fn delete_media(
    State(shared): State<Arc<Shared>>,
    Path((version, media_id)): Path<(String, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    let answer = (|| {
        authorize(&shared, &headers, uri.query())?;
        check_version(&version, uri.path())?;
        let mut state = shared.lock();
        let media = state
            .media
            .get_mut(&media_id)
            .filter(|m| !m.deleted)
            .ok_or_else(|| GraphError::unknown_object("delete", &media_id))?;
        media.deleted = true;
        Ok(json!({"success": true}))
    })();
    finish(&shared, &method, &uri, &headers, Value::Null, answer)
}

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    mid: String,
    ext: i64,
    hash: String,
}

/// GET /whatsapp_business/attachments/?mid=…&ext=…&hash=… — the lookaside URL: the bearer token
/// is required, and the URL stops working five minutes after it was handed out.
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    query: Result<Query<DownloadQuery>, QueryRejection>,
) -> Response {
    // The lookaside host is not Graph: with no token or a wrong one it answers 401 alike.
    if authorize(&shared, &headers, None).is_err() {
        let error = GraphError::invalid_token();
        return finish(&shared, &method, &uri, &headers, Value::Null, Err(error));
    }
    let found = query.ok().and_then(|Query(q)| {
        let state = shared.lock();
        let valid = same_secret(
            q.hash.as_bytes(),
            url_hash(&shared, &q.mid, q.ext).as_bytes(),
        ) && state.clock.now() <= q.ext;
        valid
            .then(|| state.media.get(&q.mid).filter(|m| !m.deleted).cloned())
            .flatten()
    });
    let status = if found.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    shared.lock().calls.push(Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: Value::Null,
        status: status.as_u16(),
        response: Value::Null,
    });
    match found {
        Some(media) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, media.mime_type.clone())],
            media.bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "URL signature expired or media not found",
        )
            .into_response(),
    }
}

/// Any other path: Graph's "Unknown path components".
pub(crate) async fn unknown_path(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    let answer = authorize(&shared, &headers, uri.query())
        .and_then(|()| Err(unknown_path_error(uri.path())));
    finish(&shared, &method, &uri, &headers, Value::Null, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_must_be_well_formed() {
        assert!(check_version("v21.0", "/v21.0/x").is_ok());
        assert!(check_version("v9.12", "/v9.12/x").is_ok());
        for bad in ["21.0", "v21", "vx.0", "v21.", "latest"] {
            assert_eq!(check_version(bad, "/").unwrap_err().code, 2500, "{bad}");
        }
    }

    #[test]
    fn media_limits_ignore_parameters() {
        assert_eq!(media_limit("audio/ogg; codecs=opus"), Some(16 << 20));
        assert_eq!(media_limit("image/webp"), Some(500 << 10));
        assert_eq!(media_limit("image/gif"), None);
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            token(&headers, Some("access_token=abc")),
            Some("abc".into())
        );
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(token(&headers, None), Some("xyz".into()));
    }
}
