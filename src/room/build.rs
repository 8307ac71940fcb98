//! Building a new local PDU: turning what a local user asks to send into a complete event in the
//! room version's federation format, with its content hash, this server's signature and its
//! event id. The caller chooses `prev_events`, `auth_events`, `depth` and the timestamp; this file
//! only assembles, checks limits, hashes and signs. It does not authorize: run `auth::check_auth`
//! on the result.

use ruma::canonical_json::CanonicalJsonValue;
use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::Ed25519KeyPair;
use ruma::{
    CanonicalJsonObject, Int, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, ServerName, UserId,
};

use super::pdu::{MAX_ID_BYTES, MAX_PDU_BYTES, Pdu, PduError, event_id_for, signing_error};

/// The most `prev_events` and `auth_events` a PDU may list (room version event format).
pub const MAX_PREV_EVENTS: usize = 20;
pub const MAX_AUTH_EVENTS: usize = 10;

/// What a local user asks to send.
#[derive(Clone, Debug)]
pub struct PduTemplate {
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    /// Must be a JSON object.
    pub content: serde_json::Value,
    pub redacts: Option<OwnedEventId>,
    /// Copied into the PDU's `unsigned`; normally `None` (a `transaction_id` does not go here).
    pub unsigned: Option<serde_json::Map<String, serde_json::Value>>,
    /// The `origin_server_ts` an appservice asked for (`?ts=`); `None` means the time of building,
    /// which the caller reads (this module reads no clock).
    pub origin_server_ts: Option<MilliSecondsSinceUnixEpoch>,
}

impl PduTemplate {
    /// A timeline (non-state) event.
    pub fn message(kind: TimelineEventType, content: serde_json::Value) -> PduTemplate {
        PduTemplate {
            kind,
            state_key: None,
            content,
            redacts: None,
            unsigned: None,
            origin_server_ts: None,
        }
    }

    /// A state event.
    pub fn state(
        kind: TimelineEventType,
        state_key: impl Into<String>,
        content: serde_json::Value,
    ) -> PduTemplate {
        PduTemplate {
            kind,
            state_key: Some(state_key.into()),
            content,
            redacts: None,
            unsigned: None,
            origin_server_ts: None,
        }
    }

    /// An `m.room.redaction` of `redacts`.
    pub fn redaction(redacts: OwnedEventId, content: serde_json::Value) -> PduTemplate {
        PduTemplate {
            kind: TimelineEventType::RoomRedaction,
            state_key: None,
            content,
            redacts: Some(redacts),
            unsigned: None,
            origin_server_ts: None,
        }
    }
}

/// Builds, hashes and signs a new local PDU.
///
/// `room_id` is `None` only for the `m.room.create` event of a room version that derives the room
/// id from it (v12); the derived id is then `result.room_id`. `redacts` goes to the top level up
/// to v10 and into `content` from v11. Refuses content that is not an object, a `type`, `sender`
/// or `state_key` over 255 bytes, more than 20 `prev_events` or 10 `auth_events`, and a PDU over
/// 65,536 bytes in canonical JSON ([`PduError::TooLarge`]).
#[allow(clippy::too_many_arguments)]
pub fn build_pdu(
    rules: &RoomVersionRules,
    room_id: Option<&RoomId>,
    template: PduTemplate,
    sender: &UserId,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    depth: u64,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    origin: &ServerName,
    key: &Ed25519KeyPair,
) -> Result<Pdu, PduError> {
    let derives_room_id = template.kind == TimelineEventType::RoomCreate
        && rules.authorization.room_create_event_id_as_room_id;
    match (room_id, derives_room_id) {
        (Some(_), true) => {
            return Err(PduError::Malformed(
                "the create event of this room version has no room_id; its id is derived".into(),
            ));
        }
        (None, false) => return Err(PduError::Malformed("room_id is required".into())),
        _ => {}
    }
    check_limits(&template, sender, &prev_events, &auth_events)?;

    let serde_json::Value::Object(mut content) = template.content else {
        return Err(PduError::Malformed("content must be a JSON object".into()));
    };
    let mut object = CanonicalJsonObject::new();
    if let Some(redacts) = template.redacts {
        if template.kind != TimelineEventType::RoomRedaction {
            return Err(PduError::Malformed(
                "only m.room.redaction events redact".into(),
            ));
        }
        if rules.redaction.content_field_redacts {
            content.insert(
                "redacts".into(),
                serde_json::Value::String(redacts.to_string()),
            );
        } else {
            object.insert(
                "redacts".into(),
                CanonicalJsonValue::String(redacts.to_string()),
            );
        }
    }

    object.insert(
        "content".into(),
        canonical(serde_json::Value::Object(content), "content")?,
    );
    object.insert(
        "type".into(),
        CanonicalJsonValue::String(template.kind.to_string()),
    );
    object.insert(
        "sender".into(),
        CanonicalJsonValue::String(sender.to_string()),
    );
    if let Some(state_key) = template.state_key {
        object.insert("state_key".into(), CanonicalJsonValue::String(state_key));
    }
    if let Some(room_id) = room_id {
        object.insert(
            "room_id".into(),
            CanonicalJsonValue::String(room_id.to_string()),
        );
    }
    object.insert("prev_events".into(), id_array(&prev_events));
    object.insert("auth_events".into(), id_array(&auth_events));
    let depth =
        Int::try_from(depth).map_err(|_| PduError::Malformed("depth is out of range".into()))?;
    object.insert("depth".into(), CanonicalJsonValue::Integer(depth));
    object.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::from(origin_server_ts.get()),
    );
    if let Some(unsigned) = template.unsigned {
        object.insert(
            "unsigned".into(),
            canonical(serde_json::Value::Object(unsigned), "unsigned")?,
        );
    }

    ruma::signatures::hash_and_sign_event(origin.as_str(), key, &mut object, &rules.redaction)
        .map_err(signing_error)?;
    let size = serde_json::to_string(&object)
        .map_err(|e| PduError::Signing(e.to_string()))?
        .len();
    if size > MAX_PDU_BYTES {
        return Err(PduError::TooLarge);
    }

    let event_id = event_id_for(rules, &object)?;
    let room_id = match room_id {
        Some(room_id) => room_id.to_owned(),
        None => RoomId::new_v2(event_id.as_str().trim_start_matches('$'))
            .map_err(|e| PduError::Malformed(format!("cannot derive the room id: {e}")))?,
    };
    Pdu::from_json_with_rules(rules, event_id, &room_id, object)
}

fn check_limits(
    template: &PduTemplate,
    sender: &UserId,
    prev_events: &[OwnedEventId],
    auth_events: &[OwnedEventId],
) -> Result<(), PduError> {
    let too_long =
        |what: &str| PduError::Malformed(format!("{what} is longer than {MAX_ID_BYTES} bytes"));
    if template.kind.to_string().len() > MAX_ID_BYTES {
        return Err(too_long("type"));
    }
    if sender.as_str().len() > MAX_ID_BYTES {
        return Err(too_long("sender"));
    }
    if template
        .state_key
        .as_ref()
        .is_some_and(|key| key.len() > MAX_ID_BYTES)
    {
        return Err(too_long("state_key"));
    }
    if prev_events.len() > MAX_PREV_EVENTS {
        return Err(PduError::Malformed(format!(
            "more than {MAX_PREV_EVENTS} prev_events"
        )));
    }
    if auth_events.len() > MAX_AUTH_EVENTS {
        return Err(PduError::Malformed(format!(
            "more than {MAX_AUTH_EVENTS} auth_events"
        )));
    }
    Ok(())
}

/// Converts client-supplied JSON, refusing what canonical JSON cannot hold (floats, integers
/// beyond 2^53).
fn canonical(value: serde_json::Value, field: &str) -> Result<CanonicalJsonValue, PduError> {
    CanonicalJsonValue::try_from(value).map_err(|e| PduError::Malformed(format!("{field}: {e}")))
}

fn id_array(ids: &[OwnedEventId]) -> CanonicalJsonValue {
    CanonicalJsonValue::Array(
        ids.iter()
            .map(|id| CanonicalJsonValue::String(id.to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
