//! Groups (Meta's Groups API): a group the business number is in, with a subject and
//! participants, made through the control API (`POST /_sim/groups`), since on WhatsApp people
//! join through an invite link and cannot be added by the business. Participants write in it
//! (`POST /_sim/groups/{group_id}/messages`: the one-to-one webhook plus `group_id`); the
//! business sends to it with `recipient_type: "group"` (checked in `graph`), and reads it with
//! `GET /{version}/{group_id}`. Group lifecycle and participant webhooks are not simulated.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::control::contact_writes;
use super::state::Group;

type Control = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn refuse(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"error": message})))
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/groups", get(list_groups).post(create_group))
        .route("/groups/{group_id}/messages", post(group_message))
}

/// A group id in the shape of Meta's documented example: the (URL-safe) base64 of
/// `capi_group:<business number>:<18 digits>`, its padding written `ZD`.
pub fn group_id(business_number: &str) -> String {
    let digits: String = (0..18)
        .map(|i| {
            let low = if i == 0 { 1 } else { 0 };
            char::from(b'0' + rand::random_range(low..10u8))
        })
        .collect();
    let raw = format!("capi_group:{business_number}:{digits}");
    base64::engine::general_purpose::URL_SAFE
        .encode(raw)
        .replace('=', "ZD")
}

/// The group node as `GET /{version}/{group_id}` answers it (Meta's Groups query reference).
pub fn info(group: &Group) -> Value {
    let mut node = json!({
        "messaging_product": "whatsapp",
        "id": group.id,
        "subject": group.subject,
        "suspended": false,
        "creation_timestamp": group.creation_timestamp,
        "participants": group.participants.iter().map(|p| json!({"wa_id": p})).collect::<Vec<_>>(),
        "total_participant_count": group.participants.len(),
        "join_approval_mode": "auto_approve",
    });
    if let Some(description) = &group.description {
        node["description"] = json!(description);
    }
    node
}

#[derive(Deserialize)]
struct NewGroup {
    subject: String,
    description: Option<String>,
    #[serde(default)]
    participants: Vec<String>,
}

/// POST /_sim/groups {"subject", "description"?, "participants": [wa_id…]} — a group the
/// business is in, its participants made contacts; answers the group node.
async fn create_group(State(shared): State<Arc<Shared>>, Json(body): Json<NewGroup>) -> Control {
    let subject = body.subject.trim();
    // Meta: at most 128 characters, whitespace trimmed; a description of at most 2048.
    if subject.is_empty() || subject.chars().count() > 128 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "subject must be 1 to 128 characters",
        ));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2048)
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "description is at most 2048 characters",
        ));
    }
    let mut participants = Vec::new();
    for p in &body.participants {
        let wa_id = super::validate::wa_id(p).ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "participants must be 7 to 15 digits",
            )
        })?;
        if !participants.contains(&wa_id) {
            participants.push(wa_id);
        }
    }
    let mut state = shared.lock();
    for p in &participants {
        state.contact_mut(p);
    }
    let group = Group {
        id: group_id(&shared.config.display_phone_number),
        subject: subject.to_owned(),
        description: body.description,
        participants,
        creation_timestamp: state.clock.now(),
    };
    let node = info(&group);
    state.groups.insert(group.id.clone(), group);
    Ok(Json(node))
}

/// GET /_sim/groups — every group, as its node.
async fn list_groups(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let state = shared.lock();
    Json(json!(state.groups.values().map(info).collect::<Vec<_>>()))
}

/// POST /_sim/groups/{group_id}/messages {"from", "type", …} — a participant writes in the
/// group: the message object as for `/_sim/contacts/{wa_id}/messages`, with `from` naming the
/// participant. The webhook carries `group_id` next to `from`.
async fn group_message(
    State(shared): State<Arc<Shared>>,
    Path(group_id): Path<String>,
    Json(mut body): Json<Value>,
) -> Control {
    let from = body
        .as_object_mut()
        .and_then(|o| o.remove("from"))
        .and_then(|f| f.as_str().and_then(super::validate::wa_id))
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "from (7 to 15 digits) is required"))?;
    {
        let state = shared.lock();
        let group = state
            .groups
            .get(&group_id)
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "unknown group"))?;
        if !group.participants.contains(&from) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "from is not a participant of the group",
            ));
        }
    }
    contact_writes(&shared, &from, body, Some(&group_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_have_the_documented_shape() {
        let id = group_id("17055550139");
        assert!(id.starts_with("Y2FwaV9ncm91cDox"), "{id}");
        let padded = format!("{}=", id.strip_suffix("ZD").unwrap());
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(padded)
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.starts_with("capi_group:17055550139:"), "{raw}");
        assert_eq!(raw.len(), "capi_group:17055550139:".len() + 18);
    }
}
