//! The authorization rules: which state an event must cite as its `auth_events`, and whether an
//! event is allowed against a given state. A thin layer over `ruma::state_res`, so that the
//! rest of Plexus speaks in `Pdu`s and room version rules and gets readable reasons back. Where
//! the state comes from (the `auth_events`, the state before the event, the current state) is the
//! caller's choice; see the functions below.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, UserId};
use serde_json::value::RawValue as RawJsonValue;

use super::pdu::{Pdu, room_create_event_id};

/// Why an event is not allowed, in words a person can read ("sender's membership is not
/// `join`", "sender does not have enough power to send event of type `m.room.name`").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// The (type, state_key) pairs whose current values must be this event's `auth_events`.
///
/// From v12 on, the `m.room.create` event is never among them: the room id names it instead.
pub fn auth_types_for(
    rules: &RoomVersionRules,
    kind: &TimelineEventType,
    sender: &UserId,
    state_key: Option<&str>,
    content: &RawJsonValue,
) -> Result<Vec<(StateEventType, String)>, AuthError> {
    ruma::state_res::auth_types_for_event(kind, sender, state_key, content, &rules.authorization)
        .map_err(AuthError)
}

/// Runs the full authorization rules for `pdu` against the state before it: the
/// state-independent checks (the create event's own rules, or the shape of `auth_events`, each
/// fetched with `fetch_event`), then the state-dependent checks against `fetch_state`.
///
/// `fetch_event` must find every event of `pdu.auth_events` and, from v12 on, the room's create
/// event (its id is `$` + the room id without `!`). `fetch_state` answers from the state the
/// event is checked against. Events loaded as rejected must carry `rejected = true`.
pub fn check_auth(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
    fetch_state: impl Fn(&StateEventType, &str) -> Option<Arc<Pdu>>,
) -> Result<(), AuthError> {
    check_state_independent(rules, pdu, &fetch_event)?;
    ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, fetch_state)
        .map_err(AuthError)
}

/// The first check on receipt of a PDU: the authorization rules against the state its own
/// `auth_events` describe. A failure here means the event is rejected.
///
/// Then run [`check_auth`] against the state before the event (rejected on failure) and against
/// the current state of the room (soft-failed on failure).
pub fn check_auth_by_auth_events(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<(), AuthError> {
    check_state_independent(rules, pdu, &fetch_event)?;

    let mut state: HashMap<(StateEventType, String), Arc<Pdu>> = HashMap::new();
    for auth_event in pdu.auth_events.iter().filter_map(|id| fetch_event(id)) {
        if let Some(key) = auth_event.state_map_key() {
            state.insert(key, auth_event);
        }
    }
    // From v12 the create event is part of every state but never cited, so it joins the state
    // described by the auth_events here.
    if rules.authorization.room_create_event_id_as_room_id
        && pdu.kind != TimelineEventType::RoomCreate
        && let Ok(create_id) = room_create_event_id(&pdu.room_id)
        && let Some(create) = fetch_event(&create_id)
    {
        state.insert((StateEventType::RoomCreate, String::new()), create);
    }

    ruma::state_res::check_state_dependent_auth_rules(
        &rules.authorization,
        pdu,
        |kind, state_key| state.get(&(kind.clone(), state_key.to_owned())).cloned(),
    )
    .map_err(AuthError)
}

fn check_state_independent(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    fetch_event: &impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<(), AuthError> {
    ruma::state_res::check_state_independent_auth_rules(&rules.authorization, pdu, fetch_event)
        .map_err(AuthError)
}

#[cfg(test)]
mod tests;
