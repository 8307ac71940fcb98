//! Who the bridge serves and whom it invites, from the configuration's `staff` and `invite`
//! rules: user ids, and rooms all of whose joined members count (a care team's room, see
//! [`Member`]). A room's members are read as the bot (`joined_members`) and kept for a few
//! seconds, so a busy portal does not cost a request per message, while someone who just joined
//! the team's room counts within seconds.
//!
//! Also what happens to a portal message from someone who is not staff (a colleague a staff
//! member invited, say): it is not sent to WhatsApp, and its sender is told so with a delivery
//! failure rather than left to believe it went out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_toolkit::client::Client;
use bridge_toolkit::delivery::Delivery;
use bridge_toolkit::store::Store;
use bridge_toolkit::{Error, MatrixEvent};
use ruma::events::room::message::MessageType;
use ruma::{OwnedRoomId, OwnedRoomOrAliasId, OwnedUserId, RoomOrAliasId, UserId};

use super::config::{BridgeSection, Member};

/// How long a room's members are trusted before they are read again.
const FRESH: Duration = Duration::from_secs(10);

/// The staff and invite rules; clones share the cache of room members.
#[derive(Clone)]
pub struct Staff {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    staff: Vec<Member>,
    invite: Vec<Member>,
    rooms: Mutex<HashMap<OwnedRoomOrAliasId, Members>>,
}

/// A room's joined members as last read (empty when they could not be read).
struct Members {
    read: Instant,
    users: HashSet<OwnedUserId>,
}

impl Staff {
    pub fn new(client: Client, bridge: &BridgeSection) -> Staff {
        Staff {
            inner: Arc::new(Inner {
                client,
                staff: bridge.staff.clone(),
                invite: bridge.invite_rules().to_vec(),
                rooms: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether `user` is staff: listed, or joined to a staff room. The staff rooms are read
    /// again for someone not known yet, unless they were just read. Never the bot or a ghost.
    pub async fn is_staff(&self, user: &UserId) -> bool {
        if self.is_known_staff(user) {
            return true;
        }
        if self.inner.client.is_bridge_user(user) {
            return false;
        }
        for room in rooms(&self.inner.staff) {
            if self.members(room).await.contains(user) {
                return true;
            }
        }
        false
    }

    /// Whether `user` is staff as far as is known without asking the homeserver: listed, or
    /// among the staff rooms' members last read. [`Staff::is_staff`] reads them when needed.
    pub fn is_known_staff(&self, user: &UserId) -> bool {
        if self.inner.client.is_bridge_user(user) {
            return false;
        }
        let cached = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.staff.iter().any(|rule| match rule {
            Member::User(listed) => listed == user,
            Member::Room(room) => cached.get(room).is_some_and(|m| m.users.contains(user)),
        })
    }

    /// Who is invited into a new portal: the invite rules' users and the current members of
    /// their rooms, once each, never the bridge's own users.
    pub async fn invitees(&self) -> Vec<OwnedUserId> {
        let mut invitees: Vec<OwnedUserId> = Vec::new();
        for rule in &self.inner.invite {
            let users = match rule {
                Member::User(user) => vec![user.clone()],
                Member::Room(room) => {
                    let mut users: Vec<_> = self.members(room).await.into_iter().collect();
                    users.sort();
                    users
                }
            };
            for user in users {
                if !self.inner.client.is_bridge_user(&user) && !invitees.contains(&user) {
                    invitees.push(user);
                }
            }
        }
        invitees
    }

    /// The rules, for `status`.
    pub fn describe(&self) -> String {
        let list = |rules: &[Member]| {
            if rules.is_empty() {
                "nobody".to_owned()
            } else {
                rules
                    .iter()
                    .map(Member::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        format!(
            "Staff: {}. Invited into new portals: {}.",
            list(&self.inner.staff),
            list(&self.inner.invite)
        )
    }

    /// The joined members of `room`, read again when older than [`FRESH`]. A room the bot cannot
    /// read counts as empty (logged) until the next read.
    async fn members(&self, room: &RoomOrAliasId) -> HashSet<OwnedUserId> {
        {
            let cached = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(members) = cached.get(room)
                && members.read.elapsed() < FRESH
            {
                return members.users.clone();
            }
        }
        let users = match self.read_members(room).await {
            Ok(users) => users,
            Err(e) => {
                tracing::warn!(room = %room, error = %e,
                    "cannot read the members of a staff or invite room (is the bridge bot in it?)");
                HashSet::new()
            }
        };
        let mut cached = self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner());
        cached.insert(
            room.to_owned(),
            Members {
                read: Instant::now(),
                users: users.clone(),
            },
        );
        users
    }

    async fn read_members(&self, room: &RoomOrAliasId) -> Result<HashSet<OwnedUserId>, Error> {
        let client = &self.inner.client;
        let room_id: OwnedRoomId = match OwnedRoomId::try_from(room.as_str()) {
            Ok(id) => id,
            Err(_) => {
                let alias = ruma::OwnedRoomAliasId::try_from(room.as_str())
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                client.resolve_alias(&alias).await?
            }
        };
        let members = match client.joined_members(client.bot(), &room_id).await {
            Ok(members) => members,
            // Not in the room yet: a public room (or one the bot was invited to) can be joined.
            Err(e) if e.errcode() == Some("M_FORBIDDEN") => {
                client.join(client.bot(), &room_id).await?;
                client.joined_members(client.bot(), &room_id).await?
            }
            Err(e) => return Err(e),
        };
        Ok(members.into_iter().collect())
    }
}

fn rooms(rules: &[Member]) -> impl Iterator<Item = &OwnedRoomOrAliasId> {
    rules.iter().filter_map(|rule| match rule {
        Member::Room(room) => Some(room),
        Member::User(_) => None,
    })
}

/// Why a non-staff sender's message did not reach the contact.
pub fn not_staff_reason(sender: &UserId, wa_id: &str) -> String {
    format!(
        "{sender} is not on this bridge's staff list, so their messages are not sent to \
         WhatsApp and +{wa_id} did not receive this. A bridge administrator can add them to \
         `staff` in the bridge configuration."
    )
}

/// A portal message or reaction from someone who is not staff: not sent to WhatsApp, and its
/// sender told why with a delivery failure — once, also when the transaction is retried. Notices
/// (other bots' output) and everything outside portals are left alone.
pub async fn refuse(store: &Store, delivery: &Delivery, event: &MatrixEvent) -> Result<(), Error> {
    let Some(wa_id) = store.portal_remote(&event.room_id)? else {
        return Ok(());
    };
    let would_be_sent = match event.message() {
        Some(message) => !matches!(message.msgtype, MessageType::Notice(_)),
        None => event.kind == "m.reaction",
    };
    if !would_be_sent || !store.claim_outbound(&event.event_id, &event.room_id)? {
        return Ok(());
    }
    let reason = not_staff_reason(&event.sender, &wa_id);
    delivery
        .failed(&event.room_id, &event.event_id, &reason)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_sender_the_contact_and_the_remedy() {
        let reason = not_staff_reason(ruma::user_id!("@bob:hs"), "447700900123");
        assert!(reason.starts_with("@bob:hs is not on this bridge's staff list"));
        assert!(reason.contains("+447700900123 did not receive this"));
        assert!(reason.contains("`staff`"));
    }
}
