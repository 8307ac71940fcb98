//! The control API under `/_sim/` through which tests play the WhatsApp side: contacts write
//! (any inbound type, with media), statuses are emitted, the window, opt-outs, the clock and
//! forced errors are set, and what the bridge sent (calls, media, webhooks) is read back. It is
//! not part of Meta's API and needs no token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::webhook_error;
use super::state::{Direction, Media, Message, WINDOW_SECONDS};
use super::{Shared, ids, webhook};

type Control = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn bad(message: impl Into<String>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
}

fn not_found(message: impl Into<String>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": message.into()})),
    )
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/calls", get(list_calls).delete(clear_calls))
        .route("/webhooks", get(list_webhooks))
        .route("/webhook", put(set_webhook))
        .route("/verify", post(verify))
        .route("/clock", get(clock).post(advance_clock))
        .route("/contacts", get(list_contacts).post(add_contact))
        .route("/contacts/{wa_id}/window", put(set_window))
        .route("/contacts/{wa_id}/opt-out", put(set_opt_out))
        .route("/contacts/{wa_id}/messages", post(inbound_message))
        .route("/messages", get(list_messages))
        .route("/messages/{id}/statuses", post(emit_status))
        .route("/media", get(list_media).post(add_media))
        .route("/media/{id}", get(read_media))
        .route("/rate-limit", post(force_errors))
        .route("/latency", put(set_latency))
        .route("/templates", post(add_template))
        .route("/errors", post(out_of_band_error))
        .merge(super::groups::router())
}

fn metadata(shared: &Shared) -> Value {
    json!({
        "display_phone_number": shared.config.display_phone_number,
        "phone_number_id": shared.config.phone_number_id,
    })
}

/// The `value` of a status webhook. `sent` and `delivered` carry the conversation and pricing
/// objects; `failed` carries `errors`. Every status of a message sent with
/// `biz_opaque_callback_data` echoes it: Meta's send reference describes the field as an
/// arbitrary string (at most 512 characters) the Cloud API does not process but returns in the
/// `statuses` objects of the message's webhooks (see the shared platform reference, C.3).
pub(crate) fn status_value(
    shared: &Shared,
    id: &str,
    wa_id: &str,
    status: &str,
    errors: &[(u32, String)],
    origin: &str,
) -> Value {
    let (now, callback_data, to_group) = {
        let state = shared.lock();
        let message = state.messages.get(id);
        let callback_data = message
            .and_then(|m| m.body["biz_opaque_callback_data"].as_str())
            .map(str::to_owned);
        let to_group = message.is_some_and(|m| m.group_id.is_some());
        (state.clock.now(), callback_data, to_group)
    };
    let mut entry = json!({
        "id": id,
        "status": status,
        "timestamp": now.to_string(),
        "recipient_id": wa_id,
    });
    // A message sent to a group: `recipient_id` is the group id (Meta's group messaging page).
    if to_group {
        entry["recipient_type"] = json!("group");
    }
    if let Some(data) = callback_data {
        entry["biz_opaque_callback_data"] = json!(data);
    }
    // Meta's group status examples carry neither conversation nor pricing.
    if matches!(status, "sent" | "delivered") && !to_group {
        entry["conversation"] = webhook::conversation(origin, now + WINDOW_SECONDS);
        entry["pricing"] = json!({"billable": true, "pricing_model": "PMP", "category": origin, "type": "regular"});
    }
    if !errors.is_empty() {
        entry["errors"] = errors
            .iter()
            .map(|(code, details)| webhook_error(*code, details))
            .collect();
    }
    json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(shared),
        "statuses": [entry],
    })
}

/// GET /_sim/calls — every Graph API request received, oldest first, with its answer.
async fn list_calls(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.lock().calls))
}

/// DELETE /_sim/calls
async fn clear_calls(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.lock().calls.clear();
    Json(json!({}))
}

/// GET /_sim/webhooks — every webhook sent, with its delivery attempts.
async fn list_webhooks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.lock().webhooks))
}

#[derive(Deserialize)]
struct WebhookUrl {
    url: Option<String>,
}

/// PUT /_sim/webhook {"url"} — where webhooks go (null stops deliveries).
async fn set_webhook(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<WebhookUrl>,
) -> Json<Value> {
    shared.lock().webhook_url = body.url;
    Json(json!({}))
}

#[derive(Deserialize, Default)]
struct Verify {
    url: Option<String>,
    mode: Option<String>,
    verify_token: Option<String>,
}

/// POST /_sim/verify {"url"?, "mode"?, "verify_token"?} — runs the subscription handshake
/// against the callback (by default the configured one, with the configured token).
async fn verify(State(shared): State<Arc<Shared>>, body: Option<Json<Verify>>) -> Control {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let url = body
        .url
        .or_else(|| shared.lock().webhook_url.clone())
        .ok_or_else(|| bad("no callback URL configured"))?;
    let token = body
        .verify_token
        .unwrap_or_else(|| shared.config.verify_token.clone());
    let outcome = webhook::handshake(
        &shared,
        &url,
        body.mode.as_deref().unwrap_or("subscribe"),
        &token,
    )
    .await
    .map_err(|e| (StatusCode::BAD_GATEWAY, Json(json!({"error": e}))))?;
    Ok(Json(json!(outcome)))
}

/// GET /_sim/clock — the simulated time, Unix seconds.
async fn clock(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"now": shared.lock().clock.now()}))
}

#[derive(Deserialize)]
struct Advance {
    advance: i64,
}

/// POST /_sim/clock {"advance": seconds}
async fn advance_clock(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Advance>,
) -> Json<Value> {
    let mut state = shared.lock();
    state.clock.advance(body.advance);
    Json(json!({"now": state.clock.now()}))
}

async fn list_contacts(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock();
    let contacts: Vec<Value> = state
        .contacts
        .values()
        .map(|c| json!({"contact": c, "window_open": state.window_open(&c.wa_id)}))
        .collect();
    Json(json!(contacts))
}

#[derive(Deserialize)]
struct NewContact {
    wa_id: String,
    name: Option<String>,
}

/// POST /_sim/contacts {"wa_id", "name"?} — a WhatsApp user (window closed until they write).
async fn add_contact(State(shared): State<Arc<Shared>>, Json(body): Json<NewContact>) -> Control {
    let wa_id =
        super::validate::wa_id(&body.wa_id).ok_or_else(|| bad("wa_id must be 7 to 15 digits"))?;
    let mut state = shared.lock();
    let contact = state.contact_mut(&wa_id);
    if let Some(name) = body.name {
        contact.name = name;
    }
    Ok(Json(json!(contact)))
}

#[derive(Deserialize)]
struct Window {
    open: Option<bool>,
    /// Unix seconds of the contact's last message; null closes the window.
    last_inbound: Option<Option<i64>>,
}

/// PUT /_sim/contacts/{wa_id}/window {"open": bool} or {"last_inbound": secs|null}
async fn set_window(
    State(shared): State<Arc<Shared>>,
    Path(wa_id): Path<String>,
    Json(body): Json<Window>,
) -> Control {
    let mut state = shared.lock();
    let now = state.clock.now();
    let last = match (body.open, body.last_inbound) {
        (_, Some(at)) => at,
        (Some(true), None) => Some(now),
        (Some(false), None) => None,
        (None, None) => return Err(bad("give open or last_inbound")),
    };
    state.contact_mut(&wa_id).last_inbound = last;
    Ok(Json(json!({"window_open": state.window_open(&wa_id)})))
}

#[derive(Deserialize)]
struct OptOut {
    opted_out: bool,
}

/// PUT /_sim/contacts/{wa_id}/opt-out {"opted_out": bool} — the contact blocks the business.
async fn set_opt_out(
    State(shared): State<Arc<Shared>>,
    Path(wa_id): Path<String>,
    Json(body): Json<OptOut>,
) -> Json<Value> {
    shared.lock().contact_mut(&wa_id).opted_out = body.opted_out;
    Json(json!({}))
}

/// POST /_sim/contacts/{wa_id}/messages — the contact writes. The body is a message object
/// without `from`, `id` and `timestamp` (`{"type": "text", "text": {"body": "hi"}}`), plus an
/// optional `name` (the profile name) and `context: {"id"}` for replies. Media payloads name a
/// media id from `POST /_sim/media`; its `mime_type` and `sha256` are filled in. Answers the new
/// message's id and the webhook's sequence number.
async fn inbound_message(
    State(shared): State<Arc<Shared>>,
    Path(wa_id): Path<String>,
    Json(body): Json<Value>,
) -> Control {
    let wa_id =
        super::validate::wa_id(&wa_id).ok_or_else(|| bad("wa_id must be 7 to 15 digits"))?;
    contact_writes(&shared, &wa_id, body, None)
}

/// A message `wa_id` writes, to the business or (with `group`) in that group: stored, and its
/// webhook queued. Only a one-to-one message opens the contact's window.
pub(crate) fn contact_writes(
    shared: &Arc<Shared>,
    wa_id: &str,
    mut body: Value,
    group: Option<&str>,
) -> Control {
    let wa_id = wa_id.to_owned();
    let object = body
        .as_object_mut()
        .ok_or_else(|| bad("body must be an object"))?;
    let name = object
        .remove("name")
        .and_then(|n| n.as_str().map(str::to_owned));
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("type is required"))?
        .to_owned();
    let (id, value) = {
        let mut state = shared.lock();
        if matches!(
            kind.as_str(),
            "image" | "video" | "audio" | "document" | "sticker"
        ) {
            let payload = object
                .get_mut(&kind)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| bad(format!("{kind} object is required")))?;
            let media_id = payload
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{kind}.id (from POST /_sim/media) is required")))?;
            let media = state
                .media
                .get(media_id)
                .ok_or_else(|| not_found("unknown media id"))?;
            payload.insert("mime_type".into(), json!(media.mime_type));
            payload.insert("sha256".into(), json!(media.sha256));
            if kind == "document" && !payload.contains_key("filename") {
                payload.insert(
                    "filename".into(),
                    json!(media.filename.clone().unwrap_or_else(|| "file".into())),
                );
            }
            if kind == "audio" && !payload.contains_key("voice") {
                payload.insert("voice".into(), json!(false));
            }
            if kind == "sticker" && !payload.contains_key("animated") {
                payload.insert("animated".into(), json!(false));
            }
        }
        // Meta leaves the emoji out of the webhook of a removed reaction.
        if kind == "reaction"
            && let Some(reaction) = object.get_mut("reaction").and_then(Value::as_object_mut)
            && reaction.get("emoji").is_some_and(|e| e == "")
        {
            reaction.remove("emoji");
        }
        if let Some(context) = object.get_mut("context").and_then(Value::as_object_mut) {
            let quoted = context
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("context.id is required"))?;
            let from = match state.messages.get(quoted) {
                Some(m) if m.direction == Direction::Outbound => {
                    shared.config.display_phone_number.clone()
                }
                Some(m) => m.wa_id.clone(),
                None => return Err(not_found("context.id names no known message")),
            };
            context.insert("from".into(), json!(from));
        }
        let id = ids::wamid(&wa_id);
        let now = state.clock.now();
        let contact = state.contact_mut(&wa_id);
        if let Some(name) = name {
            contact.name = name;
        }
        if group.is_none() {
            contact.last_inbound = Some(now);
        }
        let profile = contact.name.clone();
        let mut message = json!({"from": wa_id, "id": id, "timestamp": now.to_string()});
        if let Some(group) = group {
            message["group_id"] = json!(group);
        }
        if let Some(m) = message.as_object_mut() {
            m.extend(object.clone());
        }
        state.messages.insert(
            id.clone(),
            Message {
                id: id.clone(),
                wa_id: wa_id.clone(),
                direction: Direction::Inbound,
                timestamp: now,
                body: message.clone(),
                read: false,
                group_id: group.map(str::to_owned),
            },
        );
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(shared),
            "contacts": [{"profile": {"name": profile}, "wa_id": wa_id}],
            "messages": [message],
        });
        (id, value)
    };
    let seq = webhook::enqueue(shared, value);
    Ok(Json(json!({"id": id, "webhook": seq})))
}

/// GET /_sim/messages — every message exchanged, oldest first.
async fn list_messages(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock();
    let mut messages: Vec<&Message> = state.messages.values().collect();
    messages.sort_by_key(|m| m.timestamp);
    Json(json!(messages))
}

#[derive(Deserialize)]
struct Status {
    status: String,
    /// Error codes of a `failed` status (131026 when none are given).
    #[serde(default)]
    errors: Vec<u32>,
}

/// POST /_sim/messages/{id}/statuses {"status": "sent"|"delivered"|"read"|"failed", "errors"?: [code]}
async fn emit_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(body): Json<Status>,
) -> Control {
    if !matches!(
        body.status.as_str(),
        "sent" | "delivered" | "read" | "failed"
    ) {
        return Err(bad("status must be sent, delivered, read or failed"));
    }
    let (wa_id, template) = {
        let state = shared.lock();
        let message = state
            .messages
            .get(&id)
            .filter(|m| m.direction == Direction::Outbound)
            .ok_or_else(|| not_found("no message sent by the business with this id"))?;
        (
            message.wa_id.clone(),
            message.body.get("type").is_some_and(|t| t == "template"),
        )
    };
    let mut codes = body.errors;
    if body.status == "failed" && codes.is_empty() {
        codes.push(131026);
    }
    let errors: Vec<(u32, String)> = codes
        .into_iter()
        .map(|c| (c, super::error::title(c).to_owned()))
        .collect();
    let origin = if template { "utility" } else { "service" };
    let value = status_value(&shared, &id, &wa_id, &body.status, &errors, origin);
    let seq = webhook::enqueue(&shared, value);
    Ok(Json(json!({"webhook": seq})))
}

#[derive(Deserialize)]
struct NewMedia {
    filename: Option<String>,
}

/// POST /_sim/media?filename=… — stores the raw body (with its Content-Type) as media a contact
/// sends; answers its id for an inbound message.
async fn add_media(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<NewMedia>,
    headers: HeaderMap,
    body: Bytes,
) -> Control {
    let mime_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("Content-Type is required"))?
        .to_owned();
    let id = ids::media_id();
    let media = Media {
        id: id.clone(),
        sha256: hex::encode(Sha256::digest(&body)),
        bytes: body.to_vec(),
        mime_type,
        filename: query.filename,
        origin: "contact",
        deleted: false,
    };
    shared.lock().media.insert(id.clone(), media);
    Ok(Json(json!({"id": id})))
}

/// GET /_sim/media — metadata of every stored media object.
async fn list_media(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock();
    let list: Vec<Value> = state
        .media
        .values()
        .map(|m| json!({"id": m.id, "mime_type": m.mime_type, "sha256": m.sha256, "file_size": m.bytes.len(),
            "filename": m.filename, "origin": m.origin, "deleted": m.deleted}))
        .collect();
    Json(json!(list))
}

/// GET /_sim/media/{id} — the bytes, exactly as stored (also after deletion).
async fn read_media(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.lock().media.get(&id) {
        Some(m) => (
            [(header::CONTENT_TYPE, m.mime_type.clone())],
            m.bytes.clone(),
        )
            .into_response(),
        None => not_found("unknown media id").into_response(),
    }
}

#[derive(Deserialize)]
struct Force {
    code: u32,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

/// POST /_sim/rate-limit {"code": 130429|131056|131048|…, "count"?} — the next `count` sends
/// are answered with that error.
async fn force_errors(State(shared): State<Arc<Shared>>, Json(body): Json<Force>) -> Json<Value> {
    let mut state = shared.lock();
    state
        .forced
        .extend(std::iter::repeat_n(body.code, body.count));
    Json(json!({"pending": state.forced.len()}))
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
}

/// PUT /_sim/latency {"ms"} — each message send or media upload takes effect at once (stored,
/// statuses queued) but is answered `ms` later: a slow network, and a window in which a bridge may die after
/// Meta accepted a message and before it learnt the wamid.
async fn set_latency(State(shared): State<Arc<Shared>>, Json(body): Json<Latency>) -> Json<Value> {
    shared.lock().latency_ms = body.ms;
    Json(json!({}))
}

#[derive(Deserialize)]
struct Template {
    name: String,
    /// The body text, with its `{{n}}` placeholders.
    body: Option<String>,
}

/// POST /_sim/templates {"name", "body"?} — approves a template; sends must then fill each of
/// the body's `{{n}}` placeholders with a body parameter.
async fn add_template(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Template>,
) -> Json<Value> {
    let params = body
        .body
        .as_deref()
        .map(super::validate::placeholders)
        .unwrap_or(0);
    let mut state = shared.lock();
    state.template_body_params.insert(body.name.clone(), params);
    state.templates.insert(body.name);
    Json(json!({"body_parameters": params}))
}

#[derive(Deserialize)]
struct OutOfBand {
    code: u32,
    details: Option<String>,
}

/// POST /_sim/errors {"code", "details"?} — an out-of-band `value.errors` webhook.
async fn out_of_band_error(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<OutOfBand>,
) -> Json<Value> {
    let details = body
        .details
        .unwrap_or_else(|| super::error::title(body.code).to_owned());
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(&shared),
        "errors": [webhook_error(body.code, &details)],
    });
    Json(json!({"webhook": webhook::enqueue(&shared, value)}))
}
