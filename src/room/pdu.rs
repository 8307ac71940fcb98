//! The PDU as Plexus holds it: the signed event in its federation form (canonical JSON, exactly
//! what was hashed and signed) next to the handful of fields the rest of the server reads.
//! Parsing a stored or received PDU, the Client-Server view of it, the event id and format
//! checks, and the `ruma::state_res::Event` view that auth and state resolution run on all live
//! here. Nothing here checks signatures or authorization; see `build` and `auth`.

use ruma::canonical_json::CanonicalJsonValue;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{
    CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde_json::value::RawValue as RawJsonValue;

/// The most bytes a PDU may take in canonical JSON, signatures included.
pub const MAX_PDU_BYTES: usize = 65_536;

/// The most bytes a `sender`, `type` or `state_key` may take.
pub const MAX_ID_BYTES: usize = 255;

/// Why a PDU could not be built, parsed or redacted.
#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("the event is larger than {MAX_PDU_BYTES} bytes in canonical JSON")]
    TooLarge,
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("cannot hash or sign the event: {0}")]
    Signing(String),
}

/// A persisted or freshly built PDU: the full signed event as canonical JSON plus parsed fields.
#[derive(Clone, Debug)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// Always set, even for the `m.room.create` event of a v12 room whose JSON has no `room_id`.
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Box<RawJsonValue>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    /// The event a `m.room.redaction` redacts: top-level `redacts` up to v10, `content.redacts`
    /// from v11.
    pub redacts: Option<OwnedEventId>,
    /// The federation form: exactly what is hashed and signed (no `event_id` key).
    pub json: CanonicalJsonObject,
    /// Whether the event failed the checks on receipt of a PDU. Parsing always yields `false`;
    /// storage sets it when loading an event it recorded as rejected, because the authorization
    /// rules refuse events that cite rejected events.
    pub rejected: bool,
}

impl Pdu {
    /// Parses a stored or received PDU. `room_id` is needed because v12 create events have no
    /// `room_id` field (the room id is derived from the create event's reference hash).
    ///
    /// Without the room version, `redacts` is read from `content.redacts` when present and from
    /// the top level otherwise; use [`Pdu::from_json_with_rules`] when the version is known.
    pub fn from_json(
        event_id: OwnedEventId,
        room_id: &RoomId,
        json: CanonicalJsonObject,
    ) -> Result<Pdu, PduError> {
        parse(None, event_id, room_id, json)
    }

    /// Like [`Pdu::from_json`], but reads `redacts` exactly where the room version puts it and
    /// refuses a create event without `room_id` in versions that require one.
    pub fn from_json_with_rules(
        rules: &RoomVersionRules,
        event_id: OwnedEventId,
        room_id: &RoomId,
        json: CanonicalJsonObject,
    ) -> Result<Pdu, PduError> {
        parse(Some(rules), event_id, room_id, json)
    }

    /// The event in the Client-Server `ClientEvent` format. `unsigned` is copied from the PDU's
    /// own `unsigned` when present; callers add `age`, `transaction_id` and the like.
    pub fn to_client_event(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;

        let mut event = serde_json::Map::new();
        event.insert("event_id".into(), Value::String(self.event_id.to_string()));
        event.insert("room_id".into(), Value::String(self.room_id.to_string()));
        event.insert("sender".into(), Value::String(self.sender.to_string()));
        event.insert("type".into(), Value::String(self.kind.to_string()));
        if let Some(state_key) = &self.state_key {
            event.insert("state_key".into(), Value::String(state_key.clone()));
        }
        // The content was parsed from valid JSON, so reading it back cannot fail; an empty object
        // is the harmless answer should that ever change.
        let content = serde_json::from_str(self.content.get())
            .unwrap_or_else(|_| Value::Object(Default::default()));
        event.insert("content".into(), content);
        event.insert(
            "origin_server_ts".into(),
            Value::from(u64::from(self.origin_server_ts.get())),
        );
        // Clients written before v11 read `redacts` at the top level, so it is offered there in
        // every version, next to wherever the room version keeps it in `content`.
        if let Some(redacts) = &self.redacts {
            event.insert("redacts".into(), Value::String(redacts.to_string()));
        }
        if let Some(unsigned) = self.json.get("unsigned") {
            event.insert("unsigned".into(), Value::from(unsigned.clone()));
        }
        event
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The key this event occupies in a state map, for state events.
    pub fn state_map_key(&self) -> Option<(StateEventType, String)> {
        let state_key = self.state_key.as_ref()?;
        Some((
            StateEventType::from(self.kind.to_string()),
            state_key.clone(),
        ))
    }

    /// The federation form as a canonical JSON string, as stored and sent.
    pub fn canonical_json(&self) -> Result<String, PduError> {
        serde_json::to_string(&self.json).map_err(|e| PduError::Malformed(e.to_string()))
    }
}

/// The event id of a PDU in its federation form: `$` and its reference hash.
pub fn event_id_for(
    rules: &RoomVersionRules,
    json: &CanonicalJsonObject,
) -> Result<OwnedEventId, PduError> {
    let hash = ruma::signatures::reference_hash(json, rules).map_err(signing_error)?;
    EventId::parse(format!("${hash}"))
        .map_err(|e| PduError::Malformed(format!("bad reference hash: {e}")))
}

/// The id of the `m.room.create` event of a room whose id is derived from it (v12 and later).
/// The create event is not listed in `auth_events` there, so callers fetch it through this.
pub fn room_create_event_id(room_id: &RoomId) -> Result<OwnedEventId, PduError> {
    EventId::parse(format!("${}", room_id.strip_sigil())).map_err(|e| {
        PduError::Malformed(format!(
            "room id {room_id} is not derived from a create event: {e}"
        ))
    })
}

/// The format and size checks a received PDU must pass before anything else looks at it
/// (required fields, id lengths, at most 20 `prev_events` and 10 `auth_events`, no create event
/// in the `auth_events` of v12). Drop the PDU when this fails.
pub fn check_format(rules: &RoomVersionRules, json: &CanonicalJsonObject) -> Result<(), PduError> {
    let size = serde_json::to_string(json)
        .map_err(|e| PduError::Malformed(e.to_string()))?
        .len();
    if size > MAX_PDU_BYTES {
        return Err(PduError::TooLarge);
    }
    ruma::state_res::check_pdu_format(json, &rules.event_format).map_err(PduError::Malformed)
}

/// Maps ruma's hashing and signing failures, keeping the size refusal recognisable.
pub(crate) fn signing_error(error: ruma::signatures::JsonError) -> PduError {
    match error {
        ruma::signatures::JsonError::PduTooLarge => PduError::TooLarge,
        other => PduError::Signing(other.to_string()),
    }
}

fn parse(
    rules: Option<&RoomVersionRules>,
    event_id: OwnedEventId,
    room_id: &RoomId,
    json: CanonicalJsonObject,
) -> Result<Pdu, PduError> {
    let kind = TimelineEventType::from(required_str(&json, "type")?);
    let sender =
        UserId::parse(required_str(&json, "sender")?).map_err(|e| malformed("sender", e))?;
    let state_key = match json.get("state_key") {
        None => None,
        Some(CanonicalJsonValue::String(key)) => Some(key.clone()),
        Some(_) => return Err(PduError::Malformed("state_key is not a string".into())),
    };
    let content_object = match json.get("content") {
        Some(CanonicalJsonValue::Object(content)) => content,
        _ => {
            return Err(PduError::Malformed(
                "content is missing or not an object".into(),
            ));
        }
    };
    let content =
        serde_json::value::to_raw_value(content_object).map_err(|e| malformed("content", e))?;
    let room_id = parse_room_id(rules, &json, &kind, &event_id, room_id)?;
    let redacts = parse_redacts(rules, &json, content_object, &kind);

    Ok(Pdu {
        prev_events: event_ids(&json, "prev_events")?,
        auth_events: event_ids(&json, "auth_events")?,
        depth: non_negative(&json, "depth")?,
        origin_server_ts: MilliSecondsSinceUnixEpoch(
            UInt::new(non_negative(&json, "origin_server_ts")?)
                .ok_or_else(|| PduError::Malformed("origin_server_ts is out of range".into()))?,
        ),
        event_id,
        room_id,
        sender,
        kind,
        state_key,
        content,
        redacts,
        json,
        rejected: false,
    })
}

/// Checks the JSON's `room_id` against the room the caller says the event belongs to. A create
/// event without one is accepted only when the room id is the one derived from that event.
fn parse_room_id(
    rules: Option<&RoomVersionRules>,
    json: &CanonicalJsonObject,
    kind: &TimelineEventType,
    event_id: &EventId,
    room_id: &RoomId,
) -> Result<OwnedRoomId, PduError> {
    match json.get("room_id") {
        Some(CanonicalJsonValue::String(found)) if found == room_id.as_str() => {
            Ok(room_id.to_owned())
        }
        Some(CanonicalJsonValue::String(found)) => Err(PduError::Malformed(format!(
            "event belongs to room {found}, not {room_id}"
        ))),
        Some(_) => Err(PduError::Malformed("room_id is not a string".into())),
        None if *kind != TimelineEventType::RoomCreate => {
            Err(PduError::Malformed("room_id is missing".into()))
        }
        None if rules.is_some_and(|rules| !rules.authorization.room_create_event_id_as_room_id) => {
            Err(PduError::Malformed(
                "this room version requires room_id on m.room.create".into(),
            ))
        }
        None if room_create_event_id(room_id)? == *event_id => Ok(room_id.to_owned()),
        None => Err(PduError::Malformed(format!(
            "room id {room_id} is not derived from create event {event_id}"
        ))),
    }
}

/// Finds the redacted event id. An unparsable id is read as "redacts nothing" rather than an
/// error, because the authorization rules do not look at it and an event that passed them must
/// stay storable.
fn parse_redacts(
    rules: Option<&RoomVersionRules>,
    json: &CanonicalJsonObject,
    content: &CanonicalJsonObject,
    kind: &TimelineEventType,
) -> Option<OwnedEventId> {
    if *kind != TimelineEventType::RoomRedaction {
        return None;
    }
    let top_level = json.get("redacts").and_then(CanonicalJsonValue::as_str);
    let in_content = content.get("redacts").and_then(CanonicalJsonValue::as_str);
    let chosen = match rules.map(|rules| rules.redaction.content_field_redacts) {
        Some(true) => in_content,
        Some(false) => top_level,
        None => in_content.or(top_level),
    };
    chosen.and_then(|id| EventId::parse(id).ok())
}

fn required_str<'a>(json: &'a CanonicalJsonObject, key: &str) -> Result<&'a str, PduError> {
    json.get(key)
        .and_then(CanonicalJsonValue::as_str)
        .ok_or_else(|| PduError::Malformed(format!("{key} is missing or not a string")))
}

fn event_ids(json: &CanonicalJsonObject, key: &str) -> Result<Vec<OwnedEventId>, PduError> {
    let Some(CanonicalJsonValue::Array(items)) = json.get(key) else {
        return Err(PduError::Malformed(format!(
            "{key} is missing or not an array"
        )));
    };
    items
        .iter()
        .map(|item| {
            let id = item
                .as_str()
                .ok_or_else(|| PduError::Malformed(format!("{key} holds a non-string")))?;
            EventId::parse(id).map_err(|e| malformed(key, e))
        })
        .collect()
}

fn non_negative(json: &CanonicalJsonObject, key: &str) -> Result<u64, PduError> {
    let value = json
        .get(key)
        .and_then(CanonicalJsonValue::as_integer)
        .ok_or_else(|| PduError::Malformed(format!("{key} is missing or not an integer")))?;
    u64::try_from(i64::from(value)).map_err(|_| PduError::Malformed(format!("{key} is negative")))
}

fn malformed(field: &str, error: impl std::fmt::Display) -> PduError {
    PduError::Malformed(format!("{field}: {error}"))
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }

    /// `None` exactly when the JSON has no `room_id` (a v12 create event): the authorization
    /// rules refuse a v12 create event that carries one, and find the create event of other v12
    /// events through this id.
    fn room_id(&self) -> Option<&RoomId> {
        self.json.contains_key("room_id").then_some(&*self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        self.rejected
    }
}
