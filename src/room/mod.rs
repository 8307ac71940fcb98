//! The pure room core: building, hashing and signing PDUs, the authorization rules, state
//! resolution and redaction, for the room versions Plexus supports. Everything here is a plain
//! function of its arguments: no IO, no async, no clock (timestamps are passed in), no database.
//! Events and state reach it through `fetch_event` / `fetch_state` closures, so storage and
//! services decide where they come from.
//!
//! The order a service uses it in, for a local event: pick `auth_events` with
//! [`auth_types_for`] against the current state, [`build_pdu`], then [`check_auth`] against the
//! state before the event. For a received PDU: [`check_format`], then
//! `ruma::signatures::verify_event` (when only the signatures hold and the content hash does
//! not, carry on with the [`redact_pdu`] form), then [`check_auth_by_auth_events`], then
//! [`check_auth`] against the state before it (both reject), and finally [`check_auth`] against
//! the current state (a failure there is a soft failure).

mod auth;
mod build;
mod pdu;
mod redact;
mod resolve;
mod version;

#[cfg(test)]
mod testing;

pub use auth::{AuthError, auth_types_for, check_auth, check_auth_by_auth_events};
pub use build::{MAX_AUTH_EVENTS, MAX_PREV_EVENTS, PduTemplate, build_pdu};
pub use pdu::{
    MAX_ID_BYTES, MAX_PDU_BYTES, Pdu, PduError, check_format, event_id_for, room_create_event_id,
};
pub use redact::redact_pdu;
pub use resolve::{ResolveError, resolve_state};
pub use ruma::state_res::StateMap;
pub use version::{SUPPORTED, rules_for, supported_versions};
