//! Typing notifications: who is typing in which room, kept in memory only (a restart forgets
//! them, as it should: they expire within seconds anyway). Every change of a room's typing set
//! takes the next position of the typing stream, an in-memory counter, and wakes the room's
//! listeners; `/sync` asks `typing_changed_since(P)` for the rooms whose typing changed.
//!
//! A typing user is forgotten at their timeout (capped at `MAX_TIMEOUT`): a timer task per
//! notification removes them then, so a long-polling `/sync` sees the stop without anyone else
//! acting. This module must not persist anything or take the room lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::time::Instant;

use super::{Error, Result, Services};

/// The longest a client may claim to be typing without saying so again; longer timeouts are cut
/// to this, so a client that dies mid-sentence is not shown typing for minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// The typing state of every room that has had a typing notification since start-up.
pub struct Typing(Mutex<TypingState>);

struct TypingState {
    /// The position of the latest change in any room.
    position: u64,
    rooms: HashMap<OwnedRoomId, RoomTyping>,
}

/// One room's typing users, each with the moment they stop, and the position of the room's
/// latest change. A room whose last typist stopped keeps its entry (with no users), so a `/sync`
/// from before the stop learns that nobody types any more.
#[derive(Default)]
struct RoomTyping {
    users: HashMap<OwnedUserId, Instant>,
    changed: u64,
}

impl RoomTyping {
    /// Who types at `now`, sorted; a typist whose timer has not fired yet is already left out.
    fn typists(&self, now: Instant) -> Vec<OwnedUserId> {
        let mut users: Vec<OwnedUserId> = self
            .users
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(user, _)| user.clone())
            .collect();
        users.sort();
        users
    }
}

impl Default for Typing {
    /// The stream starts at the wall clock in milliseconds rather than at 0, so positions stay
    /// monotonic across restarts (a change per millisecond would be needed to catch up) and a
    /// token from before a restart never hides the changes after it.
    fn default() -> Typing {
        let position = u64::try_from(crate::storage::now_ms()).unwrap_or(0);
        Typing(Mutex::new(TypingState {
            position,
            rooms: HashMap::new(),
        }))
    }
}

impl Typing {
    fn state(&self) -> std::sync::MutexGuard<'_, TypingState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `user` as typing in `room` until `until`, or stopped with `None`. Returns whether the
    /// room's typing set changed (a renewed timeout alone is not a change clients need to see).
    fn set(&self, room: &RoomId, user: &UserId, until: Option<Instant>) -> bool {
        let mut state = self.state();
        let next = state.position + 1;
        let entry = state.rooms.entry(room.to_owned()).or_default();
        let changed = match until {
            Some(until) => entry.users.insert(user.to_owned(), until).is_none(),
            None => entry.users.remove(user).is_some(),
        };
        if changed {
            entry.changed = next;
            state.position = next;
        }
        changed
    }

    /// Forgets the typists of `room` whose timeout has passed; returns whether any were.
    fn expire(&self, room: &RoomId, now: Instant) -> bool {
        let mut state = self.state();
        let next = state.position + 1;
        let Some(entry) = state.rooms.get_mut(room) else {
            return false;
        };
        let before = entry.users.len();
        entry.users.retain(|_, until| *until > now);
        let changed = entry.users.len() != before;
        if changed {
            entry.changed = next;
            state.position = next;
        }
        changed
    }

    #[cfg(test)]
    fn since(&self, room: &RoomId, since: u64, now: Instant) -> Option<(Vec<OwnedUserId>, u64)> {
        let state = self.state();
        let entry = state.rooms.get(room).filter(|e| e.changed > since)?;
        Some((entry.typists(now), entry.changed))
    }

    fn position(&self) -> u64 {
        self.state().position
    }

    /// Every room whose typing set changed after `since`, with its current typists. Free when
    /// nothing changed; otherwise one pass over the rooms that ever had a typist.
    fn changed_since(&self, since: u64, now: Instant) -> HashMap<OwnedRoomId, Vec<OwnedUserId>> {
        let state = self.state();
        if state.position <= since {
            return HashMap::new();
        }
        state
            .rooms
            .iter()
            .filter(|(_, entry)| entry.changed > since)
            .map(|(room, entry)| (room.clone(), entry.typists(now)))
            .collect()
    }
}

impl Services {
    /// `PUT /rooms/{roomId}/typing/{userId}`: `timeout` is `Some` while typing, `None` to stop.
    /// Only a joined member may say they are typing, and only for themselves. Takes the services
    /// by `Arc` because the expiry timer outlives the request.
    pub async fn set_typing(
        self: &Arc<Self>,
        caller: &UserId,
        room_id: &RoomId,
        user_id: &UserId,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if caller != user_id {
            return Err(Error::Forbidden(
                "you can only set your own typing state".into(),
            ));
        }
        self.require_joined(room_id, user_id).await?;
        let until = timeout.map(|t| Instant::now() + t.min(MAX_TIMEOUT));
        if self.typing.set(room_id, user_id, until) {
            self.notifier.room_ephemeral_changed(room_id);
        }
        if let Some(until) = until {
            expire_at(Arc::downgrade(self), room_id.to_owned(), until);
        }
        self.federate_typing(room_id, user_id, until.is_some())
            .await;
        Ok(())
    }

    #[cfg(test)]
    /// Provider for `/sync`: the users typing in `room` now and the position of the room's
    /// latest typing change, when that change is after `since`; `None` when nothing changed.
    pub fn typing_since(&self, room: &RoomId, since: u64) -> Option<(Vec<OwnedUserId>, u64)> {
        self.typing.since(room, since, Instant::now())
    }

    /// The typists of every room whose typing changed after `since` (for `/sync`, which keeps
    /// those of the user's joined rooms).
    pub fn typing_changed_since(&self, since: u64) -> HashMap<OwnedRoomId, Vec<OwnedUserId>> {
        self.typing.changed_since(since, Instant::now())
    }

    /// The position of the latest typing change in any room: the `since` of the next `/sync`.
    pub fn typing_position(&self) -> u64 {
        self.typing.position()
    }
}

/// Removes the room's expired typists at `until`. The task holds the services weakly, so a
/// pending timer never keeps a stopping server alive.
fn expire_at(services: Weak<Services>, room: OwnedRoomId, until: Instant) {
    tokio::spawn(async move {
        tokio::time::sleep_until(until).await;
        let Some(services) = services.upgrade() else {
            return;
        };
        if services.typing.expire(&room, Instant::now()) {
            services.notifier.room_ephemeral_changed(&room);
        }
    });
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;
    use crate::service::UserSession;
    use crate::service::account_data::tests::services_with;
    use crate::service::rooms::CreateRoom;

    /// A fixture for the ephemeral streams: Alice's public room with Bob joined, and Carol, who
    /// is registered but in no room.
    pub(in crate::service) struct RoomOfTwo {
        pub _dir: tempfile::TempDir,
        pub services: Arc<Services>,
        pub room: OwnedRoomId,
        pub alice: UserSession,
        pub bob: UserSession,
        pub carol: UserSession,
    }

    pub(in crate::service) async fn room_of_two() -> RoomOfTwo {
        let session = |name: &str| UserSession {
            user_id: format!("@{name}:localhost").try_into().unwrap(),
            device_id: "DEVICE".into(),
            is_admin: false,
            without_device: false,
        };
        let (alice, bob, carol) = (session("alice"), session("bob"), session("carol"));
        let (dir, services) = services_with(&[&alice.user_id, &bob.user_id, &carol.user_id]).await;
        let services = Arc::new(services);
        let create = CreateRoom {
            preset: Some("public_chat".into()),
            ..CreateRoom::default()
        };
        let room = services.create_room(&alice, create).await.unwrap();
        services.join(&bob, room.as_str(), None).await.unwrap();
        RoomOfTwo {
            _dir: dir,
            services,
            room,
            alice,
            bob,
            carol,
        }
    }

    impl RoomOfTwo {
        /// Alice says `body` in the room; returns the event id.
        pub async fn message(&self, body: &str) -> ruma::OwnedEventId {
            let content = json!({"msgtype": "m.text", "body": body});
            let txn = crate::service::random_string(8);
            self.services
                .send_message(&self.alice, &self.room, "m.room.message", &txn, content)
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn members_type_for_themselves_and_the_room_wakes() {
        let fixture = room_of_two().await;
        let (services, room) = (&fixture.services, &fixture.room);
        let (alice, bob) = (&fixture.alice.user_id, &fixture.bob.user_id);
        let start = services.typing_position();
        let woken = services.notifier.subscribe_room(room);

        let ten_seconds = Some(Duration::from_secs(10));
        services
            .set_typing(alice, room, alice, ten_seconds)
            .await
            .unwrap();
        assert!(woken.has_changed().unwrap());
        assert_eq!(
            services.typing_since(room, start),
            Some((vec![alice.clone()], start + 1))
        );
        assert_eq!(services.typing_position(), start + 1);

        let someone_else = services.set_typing(alice, room, bob, ten_seconds).await;
        assert!(
            matches!(someone_else, Err(Error::Forbidden(_))),
            "{someone_else:?}"
        );
        let carol = &fixture.carol.user_id;
        let stranger = services.set_typing(carol, room, carol, ten_seconds).await;
        assert!(matches!(stranger, Err(Error::Forbidden(_))), "{stranger:?}");
        assert_eq!(
            services.typing_position(),
            start + 1,
            "refusals change nothing"
        );
    }

    #[tokio::test]
    async fn a_typist_is_forgotten_at_their_timeout_and_listeners_wake_for_it() {
        let fixture = room_of_two().await;
        let (services, room) = (&fixture.services, &fixture.room);
        let bob = &fixture.bob.user_id;
        let typing = Some(Duration::from_millis(200));
        services.set_typing(bob, room, bob, typing).await.unwrap();
        let position = services.typing_position();
        let mut woken = services.notifier.subscribe_room(room);

        tokio::time::timeout(Duration::from_secs(5), woken.changed())
            .await
            .expect("woken when the timeout passes")
            .unwrap();
        assert_eq!(
            services.typing_since(room, position),
            Some((vec![], position + 1))
        );
    }

    fn ids() -> (OwnedRoomId, OwnedUserId, OwnedUserId) {
        (
            "!room:x".try_into().unwrap(),
            "@alice:x".try_into().unwrap(),
            "@bob:x".try_into().unwrap(),
        )
    }

    #[test]
    fn each_change_of_a_room_takes_a_position_and_renewals_do_not() {
        let typing = Typing::default();
        let (room, alice, bob) = ids();
        let start = typing.position();
        let now = Instant::now();
        assert_eq!(typing.since(&room, start, now), None);

        assert!(typing.set(&room, &alice, Some(now + MAX_TIMEOUT)));
        assert!(typing.set(&room, &bob, Some(now + MAX_TIMEOUT)));
        assert!(
            !typing.set(&room, &alice, Some(now + MAX_TIMEOUT)),
            "a renewal"
        );
        assert_eq!(typing.position(), start + 2);
        assert_eq!(
            typing.since(&room, start, now),
            Some((vec![alice.clone(), bob.clone()], start + 2))
        );
        assert_eq!(typing.since(&room, start + 2, now), None);

        assert!(typing.set(&room, &alice, None));
        assert!(
            !typing.set(&room, &alice, None),
            "stopping twice changes nothing"
        );
        assert_eq!(
            typing.since(&room, start + 2, now),
            Some((vec![bob.clone()], start + 3))
        );
        assert!(typing.set(&room, &bob, None));
        assert_eq!(
            typing.since(&room, start + 3, now),
            Some((vec![], start + 4))
        );
    }

    #[test]
    fn typists_past_their_timeout_are_left_out_and_expiring_them_is_a_change() {
        let typing = Typing::default();
        let (room, alice, bob) = ids();
        let start = typing.position();
        let now = Instant::now();
        typing.set(&room, &alice, Some(now + Duration::from_secs(1)));
        typing.set(&room, &bob, Some(now + Duration::from_secs(10)));
        let later = now + Duration::from_secs(2);
        assert_eq!(
            typing.since(&room, start, later),
            Some((vec![bob.clone()], start + 2))
        );
        assert!(typing.expire(&room, later));
        assert!(!typing.expire(&room, later), "nothing more to expire");
        assert_eq!(
            typing.since(&room, start + 2, later),
            Some((vec![bob], start + 3))
        );
    }
}
