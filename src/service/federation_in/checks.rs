//! The checks on receipt of a PDU that need no database and no network, in the specification's
//! order: which room it claims, its event id (the reference hash), which signatures it must carry,
//! whether they verify with the keys the caller fetched, and whether its content hash holds (when
//! it does not, the redacted form carries on). Also whether a room's `m.room.server_acl` lets a
//! server in. Plain functions of their arguments, tested with PDUs built and signed here.

use ruma::events::room::server_acl::RoomServerAclEventContent;
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{PublicKeyMap, Verified};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, OwnedServerName,
    OwnedServerSigningKeyId, RoomId, RoomVersionId, ServerName,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::room::{self, Pdu};

/// The room a received PDU claims to belong to. A PDU without `room_id` (a v12 create event)
/// never arrives in a transaction: rooms are entered by joining.
pub fn room_id_of(json: &CanonicalJsonObject) -> Result<OwnedRoomId, String> {
    let id = json
        .get("room_id")
        .and_then(|v| v.as_str())
        .ok_or("the PDU has no room_id")?;
    RoomId::parse(id).map_err(|e| format!("room_id {id:?} is invalid: {e}"))
}

/// The `prev_events` of a PDU as they are written (empty when malformed; the format check says
/// why).
pub fn prev_event_ids(json: &CanonicalJsonObject) -> Vec<&str> {
    match json.get("prev_events") {
        Some(CanonicalJsonValue::Array(ids)) => ids.iter().filter_map(|id| id.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// The event id of a PDU whose room (and so version) is unknown here, to key the error answered
/// for it: its reference hash by the rules of version 11, which versions 11 and 12 share. `None`
/// when even that cannot be computed (the PDU is then dropped unanswered).
pub fn fallback_event_id(json: &CanonicalJsonObject) -> Option<OwnedEventId> {
    let rules = RoomVersionId::V11.rules()?;
    room::event_id_for(&rules, json).ok()
}

/// The (server, key id) pairs whose keys are needed to check the signatures a PDU must carry:
/// the sender's server (and, for versions that ask it, the event id's server and the server of
/// `join_authorised_via_users_server`), each with every key id it signed with.
pub fn keys_to_fetch(
    rules: &RoomVersionRules,
    json: &CanonicalJsonObject,
) -> Result<Vec<(OwnedServerName, OwnedServerSigningKeyId)>, String> {
    let servers =
        ruma::signatures::required_server_signatures_to_verify_event(json, &rules.signatures)
            .map_err(|e| format!("cannot tell who must have signed the PDU: {e}"))?;
    let signatures = json
        .get("signatures")
        .and_then(|v| v.as_object())
        .ok_or("the PDU has no signatures")?;
    let mut keys = Vec::new();
    for server in servers {
        let Some(by_server) = signatures.get(server.as_str()).and_then(|v| v.as_object()) else {
            return Err(format!("the PDU is not signed by {server}"));
        };
        for key_id in by_server.keys() {
            // Key ids of algorithms other than ed25519 are ignored, as verification does.
            if let Ok(key_id) = OwnedServerSigningKeyId::try_from(key_id.as_str()) {
                keys.push((server.clone(), key_id));
            }
        }
    }
    Ok(keys)
}

/// What checking the hashes and signatures made of a PDU.
#[derive(Debug)]
pub struct CheckedPdu {
    pub pdu: Pdu,
    /// The content hash did not match, so `pdu` is the redacted form.
    pub redacted: bool,
}

/// Checks the signatures of a PDU with `keys` (the public keys `keys_to_fetch` named, those that
/// could be had) and its content hash; parses it. A failed signature refuses the PDU; a failed
/// content hash yields its redacted form. The sender's `unsigned` is dropped: it is covered by no
/// hash or signature, and what this server adds there (`redacted_because`, relations) must not
/// be forgeable by another.
pub fn verify_pdu(
    rules: &RoomVersionRules,
    event_id: OwnedEventId,
    room_id: &RoomId,
    mut json: CanonicalJsonObject,
    keys: &PublicKeyMap,
) -> Result<CheckedPdu, String> {
    let verified = ruma::signatures::verify_event(keys, &json, rules)
        .map_err(|e| format!("signature check failed: {e}"))?;
    json.remove("unsigned");
    let pdu = Pdu::from_json_with_rules(rules, event_id, room_id, json)
        .map_err(|e| format!("malformed PDU: {e}"))?;
    match verified {
        Verified::All => Ok(CheckedPdu {
            pdu,
            redacted: false,
        }),
        Verified::Signatures => {
            let pdu = room::redact_pdu(&pdu, rules, None)
                .map_err(|e| format!("cannot redact the PDU: {e}"))?;
            Ok(CheckedPdu {
                pdu,
                redacted: true,
            })
        }
    }
}

/// Whether a room's `m.room.server_acl` content lets `server` take part. Content that does not
/// parse lets everyone in, as if there were no ACL.
pub fn server_allowed(acl_content: &RawJsonValue, server: &ServerName) -> bool {
    match serde_json::from_str::<RoomServerAclEventContent>(acl_content.get()) {
        Ok(acl) => acl.is_allowed(server),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests;
