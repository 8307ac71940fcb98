//! Group conversations: a WhatsApp group the business number is in gets one portal room, as a
//! contact's one-to-one chat does. Its portal is stored under the remote id `group:<group_id>`
//! (a contact's under their bare `wa_id`, which is digits only, so the two never collide). The
//! participants write as the same ghosts as in their one-to-one chats; inbound messages carry
//! `group_id` next to `from` (Meta's group messages webhook). What staff write in a group
//! portal goes out with `recipient_type: "group"` and the group id as `to` ([`address`]). The
//! room is named after the group's subject, read with `GET /{group_id}` when the portal is made.

use bridge_toolkit::Error;
use bridge_toolkit::client::{BridgeInfo, PortalRoom};
use ruma::{OwnedRoomId, UserId};
use serde_json::{Value, json};

use super::{GHOST_PREFIX, WhatsAppBridge};

/// What a group portal's remote id starts with.
const PREFIX: &str = "group:";

/// The portal remote id of group `group_id`.
pub fn portal_key(group_id: &str) -> String {
    format!("{PREFIX}{group_id}")
}

/// The group id of a portal remote id, when it names a group.
pub fn group_of(remote: &str) -> Option<&str> {
    remote.strip_prefix(PREFIX)
}

/// Whether a webhook's `group_id` can be used as a store key and a Graph path segment: Meta's
/// group ids are base64-like strings of letters and digits.
pub fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty()
        && group_id.len() <= 256
        && group_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Readdresses a message built for a portal's remote id (`to`): to a group portal it goes with
/// `recipient_type: "group"` and the group id as `to`; a contact's is left as it is.
pub fn address(message: &mut Value) {
    let group = message["to"].as_str().and_then(group_of).map(str::to_owned);
    if let Some(group) = group {
        message["recipient_type"] = json!("group");
        message["to"] = json!(group);
    }
}

impl WhatsAppBridge {
    /// The portal of group `group_id`: created by the bot on the group's first message (named
    /// after its subject, the invite rules' people invited), the writer's ghost joined.
    pub(super) async fn group_portal(
        &self,
        group_id: &str,
        ghost: &UserId,
    ) -> Result<OwnedRoomId, Error> {
        let key = portal_key(group_id);
        if let Some(room) = self.store.portal_room(&key)? {
            self.client.ensure_joined(ghost, &room).await?;
            return Ok(room);
        }
        // The subject is a nicety: without it the room still bridges the group.
        let subject = match self.cloud.node(group_id).await {
            Ok(node) => node["subject"]
                .as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            Err(e) => {
                tracing::warn!(error = ?e, "cannot read a WhatsApp group's subject");
                None
            }
        };
        let name = match &subject {
            Some(subject) => format!("{subject} (WhatsApp)"),
            None => "WhatsApp group".to_owned(),
        };
        let room = self
            .client
            .create_portal_room(&PortalRoom {
                name: Some(name),
                topic: Some("WhatsApp group chat".into()),
                invite: self.portals.staff.invitees().await,
                bridge_info: Some(BridgeInfo {
                    protocol_id: "whatsapp".into(),
                    protocol_name: "WhatsApp".into(),
                    channel_id: key.clone(),
                    channel_name: subject,
                }),
                // Hex, since aliases are best kept lower-case: the portal is made once, even if
                // this run dies before recording it.
                alias_localpart: Some(format!("{GHOST_PREFIX}group_{}", hex::encode(group_id))),
                ..PortalRoom::default()
            })
            .await?;
        self.store.set_portal(&key, &room)?;
        self.client.ensure_joined(ghost, &room).await?;
        Ok(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_portal_is_addressed_to_the_group() {
        let mut message = json!({"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": portal_key("Y2FwaV9ncm91cDox"), "type": "text", "text": {"body": "hi"}});
        address(&mut message);
        assert_eq!(message["recipient_type"], "group");
        assert_eq!(message["to"], "Y2FwaV9ncm91cDox");
        let mut one_to_one = json!({"recipient_type": "individual", "to": "447700900123"});
        address(&mut one_to_one);
        assert_eq!(
            one_to_one,
            json!({"recipient_type": "individual", "to": "447700900123"})
        );
    }

    #[test]
    fn group_ids_are_checked() {
        assert!(valid_group_id(
            "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
        ));
        assert!(!valid_group_id(""));
        assert!(!valid_group_id("../media"));
        assert_eq!(group_of("group:abc"), Some("abc"));
        assert_eq!(group_of("447700900123"), None);
    }
}
