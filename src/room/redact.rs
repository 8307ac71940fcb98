//! Redaction: what remains of a PDU once it is redacted, by the room version's redaction
//! algorithm. The redacted form keeps the event id (the reference hash is computed over the
//! redacted form anyway) and the signatures, so it can still be served over federation. Whether
//! a redaction is allowed to take effect is the caller's decision, not this file's.

use ruma::canonical_json::{RedactedBecause, redact, try_from_json_map};
use ruma::room_version_rules::RoomVersionRules;

use super::pdu::{Pdu, PduError};

/// The redacted form of `pdu`, with `unsigned.redacted_because` set to `redacted_because` (the
/// redaction event in the client format) when given. Any other `unsigned` content is dropped, as
/// the algorithm requires.
pub fn redact_pdu(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    redacted_because: Option<serde_json::Value>,
) -> Result<Pdu, PduError> {
    let because = match redacted_because {
        None => None,
        Some(serde_json::Value::Object(object)) => Some(RedactedBecause::from_json(
            try_from_json_map(object)
                .map_err(|e| PduError::Malformed(format!("redacted_because: {e}")))?,
        )),
        Some(_) => {
            return Err(PduError::Malformed(
                "redacted_because must be a JSON object".into(),
            ));
        }
    };
    let json = redact(pdu.json.clone(), &rules.redaction, because)
        .map_err(|e| PduError::Malformed(e.to_string()))?;
    let mut redacted = Pdu::from_json_with_rules(rules, pdu.event_id.clone(), &pdu.room_id, json)?;
    redacted.rejected = pdu.rejected;
    Ok(redacted)
}

#[cfg(test)]
mod tests;
