//! Portals and ghosts: a WhatsApp contact's ghost (`@whatsapp_<phone>`, named after the
//! contact's WhatsApp profile) and the portal room of the chat with them (created by the bot,
//! with whoever the invite rules name invited, `m.bridge` state). Shared by inbound messages
//! and the `start` and `template` commands.

use bridge_toolkit::Error;
use bridge_toolkit::client::{BridgeInfo, Client, PortalRoom};
use bridge_toolkit::store::Store;
use ruma::{OwnedRoomId, OwnedUserId, UserId};

use super::GHOST_PREFIX;
use super::staff::Staff;

/// What creating portals and ghosts needs; clones share everything.
#[derive(Clone)]
pub struct Portals {
    pub client: Client,
    pub store: Store,
    /// Who may answer, and who is invited into every new portal.
    pub staff: Staff,
}

impl Portals {
    /// The ghost of `wa_id`, registered, with the contact's WhatsApp profile name.
    pub async fn ghost(&self, wa_id: &str, name: Option<&str>) -> Result<OwnedUserId, Error> {
        let ghost = self
            .client
            .ensure_registered(&format!("{GHOST_PREFIX}{wa_id}"))
            .await?;
        self.store.set_ghost(wa_id, &ghost)?;
        let display = match name {
            Some(name) if !name.trim().is_empty() => format!("{name} (WhatsApp)"),
            _ => format!("+{wa_id} (WhatsApp)"),
        };
        let current = self
            .store
            .ghost_profile(&ghost)?
            .and_then(|p| p.displayname);
        if current.as_deref() != Some(display.as_str()) {
            self.client
                .set_profile(&ghost, Some(&display), None)
                .await?;
            self.store.set_ghost_profile(&ghost, Some(&display), None)?;
        }
        Ok(ghost)
    }

    /// The portal of `wa_id`: created by the bot on the first message, the invite rules'
    /// people invited, the ghost joined.
    pub async fn portal(
        &self,
        wa_id: &str,
        name: Option<&str>,
        ghost: &UserId,
    ) -> Result<OwnedRoomId, Error> {
        if let Some(room) = self.store.portal_room(wa_id)? {
            self.client.ensure_joined(ghost, &room).await?;
            return Ok(room);
        }
        let title = match name {
            Some(name) if !name.trim().is_empty() => format!("{name} (WhatsApp)"),
            _ => format!("+{wa_id} (WhatsApp)"),
        };
        let room = self
            .client
            .create_portal_room(&PortalRoom {
                name: Some(title),
                topic: Some(format!("WhatsApp chat with +{wa_id}")),
                invite: self.staff.invitees().await,
                bridge_info: Some(BridgeInfo {
                    protocol_id: "whatsapp".into(),
                    protocol_name: "WhatsApp".into(),
                    channel_id: wa_id.to_owned(),
                    channel_name: name.map(str::to_owned),
                }),
                // The alias makes the portal once, even if this run dies before recording it.
                alias_localpart: Some(format!("{GHOST_PREFIX}{wa_id}")),
                ..PortalRoom::default()
            })
            .await?;
        self.store.set_portal(wa_id, &room)?;
        self.client.ensure_joined(ghost, &room).await?;
        Ok(room)
    }
}
