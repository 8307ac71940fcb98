//! Presence: whether a user is online, idle or gone, with an optional status message. The live
//! state is kept in memory (`Presence`); what the user last set is also written to the database
//! so status messages and "last active" survive a restart.
//!
//! What others see is derived from what the user set and two clocks: a user online but not
//! active for `IDLE_AFTER` shows as unavailable, and a user silent (no presence set) for
//! `OFFLINE_AFTER` shows as offline. Every change of what others see takes the next position of
//! the presence stream, an in-memory counter, and wakes the rooms the user is joined to; a timer
//! per update makes the idle and offline transitions happen on time. Only users who share a
//! joined room see each other's presence.

mod remote;
mod table;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};
use serde_json::{Value as JsonValue, json};

use super::{Error, Result, Services};
use crate::storage::{self, now_ms, presence::PresenceRow};
use table::Table;
pub use table::{IDLE_AFTER, OFFLINE_AFTER, PresenceView, State};

/// The live presence of every user who has set one.
pub struct Presence {
    table: Mutex<Table>,
    loaded: tokio::sync::OnceCell<()>,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence {
            table: Mutex::new(Table::default()),
            loaded: tokio::sync::OnceCell::new(),
        }
    }
}

impl Presence {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Services {
    /// `PUT /presence/{userId}/status`: only for oneself. Takes the services by `Arc` because the
    /// idle and offline timers outlive the request.
    pub async fn set_presence(
        self: &Arc<Self>,
        caller: &UserId,
        user_id: &UserId,
        presence: &PresenceState,
        status_msg: Option<String>,
    ) -> Result<()> {
        if caller != user_id {
            return Err(Error::Forbidden(
                "you can only set your own presence".into(),
            ));
        }
        let set = State::parse(presence.as_str()).ok_or_else(|| {
            Error::InvalidParam(format!("unknown presence state {:?}", presence.as_str()))
        })?;
        self.load_presence().await?;
        let now = now_ms();
        let (announce, generation) =
            self.presence
                .table()
                .set(user_id, set, status_msg.clone(), now);
        let (user, last_active_ts) = (user_id.to_string(), self.presence_last_active(user_id));
        let row = PresenceRow {
            user_id: user,
            state: set.as_str().to_owned(),
            status_msg,
            last_active_ts: last_active_ts.unwrap_or(now),
            last_seen_ts: now,
        };
        self.db
            .write("set_presence", move |txn| {
                storage::presence::set_presence_txn(txn, &row)
            })
            .await?;
        if announce {
            self.wake_presence_watchers(user_id).await?;
            self.federate_presence(user_id).await;
        }
        watch_deadlines(Arc::downgrade(self), user_id.to_owned(), generation);
        Ok(())
    }

    /// Sends a local user's presence, as others now see it, in an `m.presence` EDU to every
    /// other server sharing a room with them. Those servers run the idle and offline clocks
    /// themselves (`remote.rs` here), so only changes are sent.
    async fn federate_presence(&self, user_id: &UserId) {
        if user_id.server_name() != self.server_name() || !self.federation.is_enabled() {
            return;
        }
        let view = {
            let table = self.presence.table();
            table.users.get(user_id).map(|r| r.view(now_ms()))
        };
        let Some(view) = view else {
            return;
        };
        let user = user_id.to_string();
        let servers = match self
            .db
            .read(move |c| storage::room_servers::servers_sharing_a_room(c, &user))
            .await
        {
            Ok(servers) => servers,
            Err(e) => {
                tracing::warn!(error = %e, user.id = %user_id, "cannot tell which servers to send a presence change to");
                return;
            }
        };
        let own = self.server_name().as_str();
        let destinations: Vec<String> = servers.into_iter().filter(|s| s != own).collect();
        let mut update = presence_event(user_id, &view)["content"].clone();
        update["user_id"] = json!(user_id);
        self.queue_edu(destinations, "m.presence", json!({ "push": [update] }))
            .await;
    }

    /// `/sync`'s `set_presence`: marks the syncing user online (or idle) unless their presence
    /// already says so; most syncs change nothing and write nothing.
    pub async fn presence_from_sync(
        self: &Arc<Self>,
        user_id: &UserId,
        wanted: &PresenceState,
    ) -> Result<()> {
        let Some(wanted) = State::parse(wanted.as_str()) else {
            return Err(Error::InvalidParam(format!(
                "unknown set_presence {:?}",
                wanted.as_str()
            )));
        };
        if wanted == State::Offline {
            return Ok(());
        }
        self.load_presence().await?;
        let update = self.presence.table().sync_update(user_id, wanted, now_ms());
        match update {
            Some((state, status_msg)) => {
                let state = PresenceState::from(state.as_str());
                self.set_presence(user_id, user_id, &state, status_msg)
                    .await
            }
            None => Ok(()),
        }
    }

    /// `GET /presence/{userId}/status`: one's own, or that of a user sharing a joined room
    /// (`M_FORBIDDEN` for anyone else, whether or not they exist). A user who never set a
    /// presence is offline.
    pub async fn get_presence(&self, caller: &UserId, user_id: &UserId) -> Result<PresenceView> {
        if caller != user_id {
            let (a, b) = (caller.to_string(), user_id.to_string());
            let shared = self
                .db
                .read(move |c| storage::presence::share_a_room(c, &a, &b))
                .await?;
            if !shared {
                return Err(Error::Forbidden(
                    "you do not share a room with this user".into(),
                ));
            }
        }
        self.load_presence().await?;
        let now = now_ms();
        let mut table = self.presence.table();
        table.refresh_due(now);
        Ok(table.users.get(user_id).map_or(
            PresenceView {
                state: State::Offline,
                status_msg: None,
                last_active_ago: None,
                currently_active: None,
            },
            |record| record.view(now),
        ))
    }

    #[cfg(test)]
    /// Provider for `/sync`: an `m.presence` event for each user sharing a joined room with
    /// `user_id` (and `user_id` themself) whose presence changed after presence position `since`,
    /// and the position the answer is complete up to (the next `since`).
    pub async fn presence_since(
        &self,
        user_id: &UserId,
        since: u64,
    ) -> Result<(Vec<JsonValue>, u64)> {
        let (candidates, position) = self.presence_changes(since).await?;
        if candidates.is_empty() {
            return Ok((Vec::new(), position));
        }
        let user = user_id.to_string();
        let sharing: HashSet<String> = self
            .db
            .read(move |c| storage::presence::users_sharing_a_room(c, &user))
            .await?
            .into_iter()
            .collect();
        Ok((
            self.presence_events(user_id, &candidates, &sharing),
            position,
        ))
    }

    /// The users whose presence changed after position `since`, and the current position: the
    /// first half of what `/sync` sends.
    pub(crate) async fn presence_changes(&self, since: u64) -> Result<(Vec<OwnedUserId>, u64)> {
        self.load_presence().await?;
        let mut table = self.presence.table();
        table.refresh_due(now_ms());
        let changed = table
            .by_position
            .range(since.saturating_add(1)..)
            .map(|(_, user)| user.clone())
            .collect();
        Ok((changed, table.position))
    }

    /// The presence events `user_id` may see among `candidates`: their own, and those of the
    /// users in `sharing` (who share a room with them).
    pub(crate) fn presence_events(
        &self,
        user_id: &UserId,
        candidates: &[OwnedUserId],
        sharing: &HashSet<String>,
    ) -> Vec<JsonValue> {
        let now = now_ms();
        let table = self.presence.table();
        candidates
            .iter()
            .filter(|u| *u == user_id || sharing.contains(u.as_str()))
            .filter_map(|u| table.users.get(u).map(|r| presence_event(u, &r.view(now))))
            .collect()
    }

    #[cfg(test)]
    /// The position of the latest presence change: the `since` of the next `/sync`.
    pub async fn presence_position(&self) -> Result<u64> {
        self.load_presence().await?;
        Ok(self.presence.table().position)
    }

    fn presence_last_active(&self, user_id: &UserId) -> Option<i64> {
        self.presence
            .table()
            .users
            .get(user_id)
            .map(|r| r.last_active_ms)
    }

    /// Reads the stored presence into memory, once, on first use.
    async fn load_presence(&self) -> Result<()> {
        self.presence
            .loaded
            .get_or_try_init(|| async {
                let rows = self.db.read(storage::presence::all_presence).await?;
                let now = now_ms();
                let mut table = self.presence.table();
                for row in &rows {
                    table.restore(row, now);
                }
                Ok::<_, Error>(())
            })
            .await?;
        Ok(())
    }

    /// Wakes the listeners of every room `user_id` is joined to: their members may see the change.
    async fn wake_presence_watchers(&self, user_id: &UserId) -> Result<()> {
        let user = user_id.to_string();
        let rooms = self
            .db
            .read(move |c| storage::rooms::rooms_of_user(c, &user, "join"))
            .await?;
        for room in rooms {
            if let Ok(room) = ruma::RoomId::parse(&room) {
                self.notifier.room_ephemeral_changed(&room);
            }
        }
        Ok(())
    }
}

/// The `m.presence` event of `user` as `/sync` delivers it.
pub fn presence_event(user: &UserId, view: &PresenceView) -> JsonValue {
    let mut content = json!({ "presence": view.state.as_str() });
    if let Some(ago) = view.last_active_ago {
        content["last_active_ago"] = json!(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX));
    }
    if let Some(active) = view.currently_active {
        content["currently_active"] = json!(active);
    }
    if let Some(message) = &view.status_msg {
        content["status_msg"] = json!(message);
    }
    json!({ "type": "m.presence", "sender": user, "content": content })
}

/// Sleeps until each of the user's deadlines (idle, then offline) and announces the change then,
/// until a newer update takes over. Holds the services weakly, so a pending timer never keeps a
/// stopping server alive.
fn watch_deadlines(services: Weak<Services>, user: OwnedUserId, generation: u64) {
    tokio::spawn(async move {
        loop {
            let deadline = {
                let Some(services) = services.upgrade() else {
                    return;
                };
                let Some(deadline) = services.presence.table().deadline_of(&user, generation)
                else {
                    return;
                };
                deadline
            };
            let wait = u64::try_from(deadline - now_ms()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Some(services) = services.upgrade() else {
                return;
            };
            let changed = services.presence.table().refresh_due(now_ms());
            for user in changed {
                if let Err(e) = services.wake_presence_watchers(&user).await {
                    tracing::warn!(error = %e, user.id = %user, "cannot announce a presence change");
                }
                services.federate_presence(&user).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn presence_is_shared_with_room_mates_only() {
        let fixture = crate::service::typing::tests::room_of_two().await;
        let services = &fixture.services;
        let (alice, bob) = (&fixture.alice.user_id, &fixture.bob.user_id);
        let carol = &fixture.carol.user_id;
        let start = services.presence_position().await.unwrap();
        let woken = services.notifier.subscribe_room(&fixture.room);

        let online = PresenceState::Online;
        services
            .set_presence(alice, alice, &online, Some("on ward 3".into()))
            .await
            .unwrap();
        assert!(woken.has_changed().unwrap());
        let seen_by_bob = services.get_presence(bob, alice).await.unwrap();
        assert_eq!(seen_by_bob.state, State::Online);
        assert_eq!(seen_by_bob.status_msg.as_deref(), Some("on ward 3"));
        assert_eq!(seen_by_bob.currently_active, Some(true));
        let never_set = services.get_presence(alice, bob).await.unwrap();
        assert_eq!(never_set.state, State::Offline);
        let carol_asks = services.get_presence(carol, alice).await;
        assert!(
            matches!(carol_asks, Err(Error::Forbidden(_))),
            "{carol_asks:?}"
        );
        let for_someone_else = services.set_presence(bob, alice, &online, None).await;
        assert!(matches!(for_someone_else, Err(Error::Forbidden(_))));
        let busy = PresenceState::from("busy");
        let unknown_state = services.set_presence(bob, bob, &busy, None).await;
        assert!(matches!(unknown_state, Err(Error::InvalidParam(_))));

        let (events, position) = services.presence_since(bob, start).await.unwrap();
        assert_eq!(position, start + 1);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["sender"], alice.as_str());
        assert_eq!(events[0]["content"]["status_msg"], "on ward 3");
        let (none, same) = services.presence_since(bob, position).await.unwrap();
        assert!(none.is_empty());
        assert_eq!(same, position);
        let (hidden, _) = services.presence_since(carol, start).await.unwrap();
        assert!(hidden.is_empty(), "Carol shares no room with Alice");

        services
            .set_presence(carol, carol, &online, None)
            .await
            .unwrap();
        let (own, _) = services.presence_since(carol, start).await.unwrap();
        assert_eq!(own.len(), 1, "one's own presence is always there");
        assert_eq!(own[0]["sender"], carol.as_str());
    }

    #[test]
    fn the_presence_event_has_the_sync_shape() {
        let view = PresenceView {
            state: State::Online,
            status_msg: Some("hi".into()),
            last_active_ago: Some(Duration::from_millis(1500)),
            currently_active: Some(true),
        };
        assert_eq!(
            presence_event("@alice:x".try_into().unwrap(), &view),
            json!({"type": "m.presence", "sender": "@alice:x", "content": {
                "presence": "online", "last_active_ago": 1500, "currently_active": true, "status_msg": "hi",
            }})
        );
    }
}
