//! The bridge's SQLite store (one file, WAL): which Matrix room is the portal of which remote
//! chat, which Matrix user is the ghost of which remote user, which event is the copy of which
//! remote message, which transactions were handled, and the delivery state of each message.
//!
//! Messages are the loop-breaker. Before bridging a remote message, a bridge claims its remote id
//! ([`Store::claim_inbound`]); before bridging a Matrix event, its event id
//! ([`Store::claim_outbound`]). A claim fails when the id is known in either direction: the
//! message was bridged already (a redelivered webhook, a retried transaction), or it is the copy
//! the bridge itself made (the remote network's echo of a message the bridge sent, once its
//! remote id is recorded with [`Store::record_remote_id`], or a ghost's event coming back from
//! the homeserver once [`Store::record_event_id`] has run). So nothing is bridged twice and
//! nothing is echoed back.
//!
//! A claim alone does not say whether the message left: a bridge that stops between claiming an
//! event and recording its remote id would, on the homeserver's redelivery, find the claim and
//! drop the message. So an outbound send is marked when it begins ([`Store::start_send`]), and
//! [`Store::outbound_progress`] tells a redelivered event apart: claimed but never sent (send it),
//! in doubt (a send began, its outcome was never recorded: reconcile, never send blindly again),
//! or settled. Inbound, a claim without an event id is a message whose Matrix send may have been
//! cut short; bridges re-send it with a transaction id derived from the remote id, which the
//! homeserver deduplicates.
//!
//! Migrations are embedded (`migrations/NNNN_verb_noun.sql`), applied in order at open, their
//! count kept in `PRAGMA user_version`; a store newer than this code is refused. Calls are
//! synchronous and short (indexed single-row statements on a local file).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_create_mappings.sql"),
    include_str!("../migrations/0002_add_send_started.sql"),
];

/// The direction a message was bridged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the remote network into Matrix.
    Inbound,
    /// From Matrix to the remote network.
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Where a bridged message stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Claimed, not yet confirmed by the other side.
    Pending,
    Delivered,
    /// Refused for good, with a reason a person can read.
    Failed(String),
}

/// One bridged message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub remote_id: Option<String>,
    pub event_id: Option<OwnedEventId>,
    pub room_id: OwnedRoomId,
    pub direction: Direction,
    pub delivery: DeliveryState,
}

/// How far a claimed outbound event got (see [`Store::outbound_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundProgress {
    /// Claimed, and no send to the remote network began: sending it is safe.
    Claimed,
    /// A send began at `since` (milliseconds since the Unix epoch) and its outcome was never
    /// recorded: the remote network may or may not have it, so it must not be sent again blindly.
    InDoubt { since: i64 },
    /// Sent (its remote id is known), delivered or failed — or not an outbound message at all.
    Settled,
}

/// The profile last set on a ghost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GhostProfile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// How far the handling of a transaction got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransactionProgress {
    /// Events handed to the bridge successfully, from the start of the transaction.
    pub events_done: usize,
    pub ephemeral_done: usize,
    /// Every event and ephemeral event was handled.
    pub completed: bool,
}

/// The store; clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Store::init(conn)
    }

    /// A store that lives as long as the value (tests).
    pub fn open_in_memory() -> Result<Store, Error> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(Error::Invalid(format!(
                "the store is at version {version}, newer than this bridge ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let txn = conn.transaction()?;
            txn.execute_batch(migration)?;
            txn.pragma_update(None, "user_version", (i + 1) as i64)?;
            txn.commit()?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done statement: SQLite rolls it back.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // Portals.

    /// The portal room of a remote chat.
    pub fn portal_room(&self, remote_id: &str) -> Result<Option<OwnedRoomId>, Error> {
        let room: Option<String> = self
            .conn()
            .query_row(
                "SELECT room_id FROM portals WHERE remote_id = ?1",
                [remote_id],
                |r| r.get(0),
            )
            .optional()?;
        room.map(|r| parse_id(&r)).transpose()
    }

    /// The remote chat a room is the portal of.
    pub fn portal_remote(&self, room_id: &RoomId) -> Result<Option<String>, Error> {
        Ok(self
            .conn()
            .query_row(
                "SELECT remote_id FROM portals WHERE room_id = ?1",
                [room_id.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records (or moves) the portal of a remote chat.
    pub fn set_portal(&self, remote_id: &str, room_id: &RoomId) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO portals (remote_id, room_id, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (remote_id) DO UPDATE SET room_id = excluded.room_id",
            params![remote_id, room_id.as_str(), now()],
        )?;
        Ok(())
    }

    pub fn remove_portal(&self, remote_id: &str) -> Result<(), Error> {
        self.conn()
            .execute("DELETE FROM portals WHERE remote_id = ?1", [remote_id])?;
        Ok(())
    }

    // Ghosts.

    /// The ghost of a remote user.
    pub fn ghost_user(&self, remote_id: &str) -> Result<Option<OwnedUserId>, Error> {
        let user: Option<String> = self
            .conn()
            .query_row(
                "SELECT user_id FROM ghosts WHERE remote_id = ?1",
                [remote_id],
                |r| r.get(0),
            )
            .optional()?;
        user.map(|u| parse_id(&u)).transpose()
    }

    /// The remote user a Matrix user is the ghost of.
    pub fn ghost_remote(&self, user_id: &UserId) -> Result<Option<String>, Error> {
        Ok(self
            .conn()
            .query_row(
                "SELECT remote_id FROM ghosts WHERE user_id = ?1",
                [user_id.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_ghost(&self, remote_id: &str, user_id: &UserId) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO ghosts (remote_id, user_id) VALUES (?1, ?2)
             ON CONFLICT (remote_id) DO UPDATE SET user_id = excluded.user_id",
            params![remote_id, user_id.as_str()],
        )?;
        Ok(())
    }

    /// The display name and avatar last set on a ghost, so unchanged profiles are not sent again.
    pub fn ghost_profile(&self, user_id: &UserId) -> Result<Option<GhostProfile>, Error> {
        Ok(self
            .conn()
            .query_row(
                "SELECT displayname, avatar_url FROM ghosts WHERE user_id = ?1",
                [user_id.as_str()],
                |r| {
                    Ok(GhostProfile {
                        displayname: r.get(0)?,
                        avatar_url: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_ghost_profile(
        &self,
        user_id: &UserId,
        displayname: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<(), Error> {
        self.conn().execute(
            "UPDATE ghosts SET displayname = ?2, avatar_url = ?3 WHERE user_id = ?1",
            params![user_id.as_str(), displayname, avatar_url],
        )?;
        Ok(())
    }

    // Messages.

    /// Claims a remote message for bridging into `room_id`: false when its remote id is known
    /// already (bridged before, or the echo of a message this bridge sent).
    pub fn claim_inbound(&self, remote_id: &str, room_id: &RoomId) -> Result<bool, Error> {
        let inserted = self.conn().execute(
            "INSERT INTO messages (remote_id, room_id, direction, updated_at)
             VALUES (?1, ?2, 'inbound', ?3) ON CONFLICT DO NOTHING",
            params![remote_id, room_id.as_str(), now()],
        )?;
        Ok(inserted == 1)
    }

    /// Records the event an inbound message became, which marks it delivered.
    pub fn record_event_id(&self, remote_id: &str, event_id: &EventId) -> Result<(), Error> {
        self.conn().execute(
            "UPDATE messages SET event_id = ?2, delivery = 'delivered', updated_at = ?3
             WHERE remote_id = ?1",
            params![remote_id, event_id.as_str(), now()],
        )?;
        Ok(())
    }

    /// Claims a Matrix event for bridging to the remote network: false when its event id is
    /// known already (bridged before, or the copy of a remote message).
    pub fn claim_outbound(&self, event_id: &EventId, room_id: &RoomId) -> Result<bool, Error> {
        let inserted = self.conn().execute(
            "INSERT INTO messages (event_id, room_id, direction, updated_at)
             VALUES (?1, ?2, 'outbound', ?3) ON CONFLICT DO NOTHING",
            params![event_id.as_str(), room_id.as_str(), now()],
        )?;
        Ok(inserted == 1)
    }

    /// Records the remote id an outbound event got, so the remote network's echo of it is known.
    /// The delivery state is left to [`Store::set_delivery`].
    pub fn record_remote_id(&self, event_id: &EventId, remote_id: &str) -> Result<(), Error> {
        self.conn().execute(
            "UPDATE messages SET remote_id = ?2, updated_at = ?3 WHERE event_id = ?1",
            params![event_id.as_str(), remote_id, now()],
        )?;
        Ok(())
    }

    /// Marks the moment an outbound event's send to the remote network begins: from now on, until
    /// its remote id is recorded, the send is in doubt (see [`Store::outbound_progress`]).
    pub fn start_send(&self, event_id: &EventId) -> Result<(), Error> {
        self.conn().execute(
            "UPDATE messages SET send_started_at = ?2, updated_at = ?2
             WHERE event_id = ?1 AND direction = 'outbound'",
            params![event_id.as_str(), now()],
        )?;
        Ok(())
    }

    /// How far the bridging of a claimed outbound event got; `None` when it was never claimed.
    /// An event id known as the copy of a remote message counts as settled.
    pub fn outbound_progress(&self, event_id: &EventId) -> Result<Option<OutboundProgress>, Error> {
        let row: Option<(String, Option<String>, String, Option<i64>)> = self
            .conn()
            .query_row(
                "SELECT direction, remote_id, delivery, send_started_at FROM messages
                 WHERE event_id = ?1",
                [event_id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        Ok(row.map(|(direction, remote_id, delivery, started)| {
            match (direction.as_str(), remote_id, delivery.as_str(), started) {
                ("outbound", None, "pending", None) => OutboundProgress::Claimed,
                ("outbound", None, "pending", Some(at)) => OutboundProgress::InDoubt { since: at },
                _ => OutboundProgress::Settled,
            }
        }))
    }

    /// Outbound events whose send began before `started_before` (milliseconds since the Unix
    /// epoch) and whose outcome is still unknown, oldest first.
    pub fn in_doubt(&self, started_before: i64) -> Result<Vec<Message>, Error> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT remote_id, event_id, room_id, direction, delivery, reason FROM messages
             WHERE direction = 'outbound' AND delivery = 'pending' AND remote_id IS NULL
               AND send_started_at IS NOT NULL AND send_started_at < ?1 ORDER BY id",
        )?;
        let rows = statement
            .query_map([started_before], message_columns)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(message_from_columns).collect()
    }

    /// Removes a claim whose bridging did not happen, so it may be tried again.
    pub fn release_claim(&self, direction: Direction, id: &str) -> Result<(), Error> {
        let sql = match direction {
            Direction::Inbound => "DELETE FROM messages WHERE remote_id = ?1 AND event_id IS NULL",
            Direction::Outbound => "DELETE FROM messages WHERE event_id = ?1 AND remote_id IS NULL",
        };
        self.conn().execute(sql, [id])?;
        Ok(())
    }

    /// The event a remote message is (or was copied to).
    pub fn event_for_remote(&self, remote_id: &str) -> Result<Option<OwnedEventId>, Error> {
        let event: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT event_id FROM messages WHERE remote_id = ?1",
                [remote_id],
                |r| r.get(0),
            )
            .optional()?;
        event.flatten().map(|e| parse_id(&e)).transpose()
    }

    /// The remote message an event is (or was copied to).
    pub fn remote_for_event(&self, event_id: &EventId) -> Result<Option<String>, Error> {
        let remote: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT remote_id FROM messages WHERE event_id = ?1",
                [event_id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(remote.flatten())
    }

    /// The message row of an event.
    pub fn message_by_event(&self, event_id: &EventId) -> Result<Option<Message>, Error> {
        self.message_where("event_id = ?1", event_id.as_str())
    }

    /// The message row of a remote message.
    pub fn message_by_remote(&self, remote_id: &str) -> Result<Option<Message>, Error> {
        self.message_where("remote_id = ?1", remote_id)
    }

    fn message_where(&self, condition: &str, value: &str) -> Result<Option<Message>, Error> {
        let sql = format!(
            "SELECT remote_id, event_id, room_id, direction, delivery, reason FROM messages
             WHERE {condition}"
        );
        let row = self
            .conn()
            .query_row(&sql, [value], message_columns)
            .optional()?;
        row.map(message_from_columns).transpose()
    }

    /// Messages of a direction still pending, oldest first: after a restart, the ones whose
    /// bridging may have been cut short.
    pub fn pending(&self, direction: Direction) -> Result<Vec<Message>, Error> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT remote_id, event_id, room_id, direction, delivery, reason FROM messages
             WHERE direction = ?1 AND delivery = 'pending' ORDER BY id",
        )?;
        let rows = statement
            .query_map([direction.as_str()], message_columns)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(message_from_columns).collect()
    }

    /// Sets the delivery state of an outbound event; false when the event was never claimed.
    pub fn set_delivery(&self, event_id: &EventId, state: &DeliveryState) -> Result<bool, Error> {
        let (delivery, reason) = match state {
            DeliveryState::Pending => ("pending", None),
            DeliveryState::Delivered => ("delivered", None),
            DeliveryState::Failed(reason) => ("failed", Some(reason.as_str())),
        };
        let updated = self.conn().execute(
            "UPDATE messages SET delivery = ?2, reason = ?3, updated_at = ?4 WHERE event_id = ?1",
            params![event_id.as_str(), delivery, reason, now()],
        )?;
        Ok(updated == 1)
    }

    // Transactions.

    /// How far a transaction's handling got; `None` for a transaction never seen.
    pub fn transaction_progress(&self, txn_id: &str) -> Result<Option<TransactionProgress>, Error> {
        Ok(self
            .conn()
            .query_row(
                "SELECT events_done, ephemeral_done, completed FROM transactions WHERE txn_id = ?1",
                [txn_id],
                |r| {
                    Ok(TransactionProgress {
                        events_done: r.get::<_, i64>(0)? as usize,
                        ephemeral_done: r.get::<_, i64>(1)? as usize,
                        completed: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_transaction_progress(
        &self,
        txn_id: &str,
        progress: TransactionProgress,
    ) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO transactions (txn_id, events_done, ephemeral_done, completed, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (txn_id) DO UPDATE SET events_done = excluded.events_done,
                 ephemeral_done = excluded.ephemeral_done, completed = excluded.completed,
                 updated_at = excluded.updated_at",
            params![
                txn_id,
                progress.events_done as i64,
                progress.ephemeral_done as i64,
                progress.completed,
                now()
            ],
        )?;
        Ok(())
    }

    // Management rooms.

    /// Records `room_id` as `user_id`'s management room (their direct chat with the bot).
    pub fn set_management_room(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), Error> {
        self.conn().execute(
            "INSERT INTO management_rooms (room_id, user_id) VALUES (?1, ?2)
             ON CONFLICT (room_id) DO UPDATE SET user_id = excluded.user_id",
            params![room_id.as_str(), user_id.as_str()],
        )?;
        Ok(())
    }

    /// The user whose management room `room_id` is.
    pub fn management_room_owner(&self, room_id: &RoomId) -> Result<Option<OwnedUserId>, Error> {
        let user: Option<String> = self
            .conn()
            .query_row(
                "SELECT user_id FROM management_rooms WHERE room_id = ?1",
                [room_id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        user.map(|u| parse_id(&u)).transpose()
    }
}

type MessageColumns = (
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
);

fn message_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn message_from_columns(
    (remote_id, event_id, room_id, direction, delivery, reason): MessageColumns,
) -> Result<Message, Error> {
    Ok(Message {
        remote_id,
        event_id: event_id.map(|e| parse_id(&e)).transpose()?,
        room_id: parse_id(&room_id)?,
        direction: if direction == "inbound" {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        delivery: match delivery.as_str() {
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed(reason.unwrap_or_default()),
            _ => DeliveryState::Pending,
        },
    })
}

fn parse_id<T: TryFrom<String>>(text: &str) -> Result<T, Error> {
    T::try_from(text.to_owned()).map_err(|_| Error::Invalid(format!("stored id {text:?}")))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{event_id, room_id, user_id};

    #[test]
    fn nothing_is_bridged_twice_and_nothing_echoes() {
        let store = Store::open_in_memory().unwrap();
        let room = room_id!("!portal:hs");
        // A remote message comes in once; its redelivery is refused.
        assert!(store.claim_inbound("wamid.1", room).unwrap());
        assert!(!store.claim_inbound("wamid.1", room).unwrap());
        store
            .record_event_id("wamid.1", event_id!("$copy"))
            .unwrap();
        // The copy the bridge made comes back from the homeserver: not bridged out.
        assert!(!store.claim_outbound(event_id!("$copy"), room).unwrap());
        // A Matrix message goes out once; its remote echo is refused.
        assert!(store.claim_outbound(event_id!("$staff"), room).unwrap());
        assert!(!store.claim_outbound(event_id!("$staff"), room).unwrap());
        store
            .record_remote_id(event_id!("$staff"), "wamid.2")
            .unwrap();
        assert!(!store.claim_inbound("wamid.2", room).unwrap());
        assert_eq!(
            store.event_for_remote("wamid.2").unwrap().unwrap(),
            event_id!("$staff")
        );
        assert_eq!(
            store.remote_for_event(event_id!("$copy")).unwrap().unwrap(),
            "wamid.1"
        );
    }

    #[test]
    fn delivery_states_and_pending_messages() {
        let store = Store::open_in_memory().unwrap();
        let room = room_id!("!portal:hs");
        assert!(store.claim_outbound(event_id!("$a"), room).unwrap());
        assert!(store.claim_outbound(event_id!("$b"), room).unwrap());
        store
            .set_delivery(
                event_id!("$a"),
                &DeliveryState::Failed("window closed".into()),
            )
            .unwrap();
        let pending = store.pending(Direction::Outbound).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event_id.as_deref(), Some(event_id!("$b")));
        let a = store.message_by_event(event_id!("$a")).unwrap().unwrap();
        assert_eq!(a.delivery, DeliveryState::Failed("window closed".into()));
        assert_eq!(a.direction, Direction::Outbound);
        assert!(
            !store
                .set_delivery(event_id!("$never"), &DeliveryState::Delivered)
                .unwrap()
        );
    }

    #[test]
    fn a_send_begun_and_never_recorded_is_in_doubt() {
        let store = Store::open_in_memory().unwrap();
        let room = room_id!("!portal:hs");
        assert_eq!(store.outbound_progress(event_id!("$a")).unwrap(), None);
        assert!(store.claim_outbound(event_id!("$a"), room).unwrap());
        assert_eq!(
            store.outbound_progress(event_id!("$a")).unwrap(),
            Some(OutboundProgress::Claimed)
        );
        store.start_send(event_id!("$a")).unwrap();
        let Some(OutboundProgress::InDoubt { since }) =
            store.outbound_progress(event_id!("$a")).unwrap()
        else {
            panic!("a begun send is in doubt");
        };
        assert!(store.in_doubt(since).unwrap().is_empty());
        let doubtful = store.in_doubt(since + 1).unwrap();
        assert_eq!(doubtful.len(), 1);
        assert_eq!(doubtful[0].event_id.as_deref(), Some(event_id!("$a")));
        // The remote id arrives (the answer, or a status naming the event): settled.
        store.record_remote_id(event_id!("$a"), "wamid.a").unwrap();
        assert_eq!(
            store.outbound_progress(event_id!("$a")).unwrap(),
            Some(OutboundProgress::Settled)
        );
        assert!(store.in_doubt(i64::MAX).unwrap().is_empty());
        // A ghost's copy of a remote message is settled, never sent.
        assert!(store.claim_inbound("wamid.b", room).unwrap());
        store.record_event_id("wamid.b", event_id!("$b")).unwrap();
        assert_eq!(
            store.outbound_progress(event_id!("$b")).unwrap(),
            Some(OutboundProgress::Settled)
        );
    }

    #[test]
    fn a_released_claim_can_be_made_again() {
        let store = Store::open_in_memory().unwrap();
        let room = room_id!("!portal:hs");
        assert!(store.claim_inbound("m1", room).unwrap());
        store.release_claim(Direction::Inbound, "m1").unwrap();
        assert!(store.claim_inbound("m1", room).unwrap());
    }

    #[test]
    fn portals_ghosts_and_management_rooms_map_both_ways() {
        let store = Store::open_in_memory().unwrap();
        store.set_portal("chat1", room_id!("!r:hs")).unwrap();
        assert_eq!(
            store.portal_room("chat1").unwrap().unwrap(),
            room_id!("!r:hs")
        );
        assert_eq!(
            store.portal_remote(room_id!("!r:hs")).unwrap().unwrap(),
            "chat1"
        );
        store
            .set_ghost("447700", user_id!("@wa_447700:hs"))
            .unwrap();
        assert_eq!(
            store
                .ghost_remote(user_id!("@wa_447700:hs"))
                .unwrap()
                .unwrap(),
            "447700"
        );
        store
            .set_ghost_profile(user_id!("@wa_447700:hs"), Some("Ann"), None)
            .unwrap();
        assert_eq!(
            store
                .ghost_profile(user_id!("@wa_447700:hs"))
                .unwrap()
                .unwrap(),
            GhostProfile {
                displayname: Some("Ann".to_owned()),
                avatar_url: None
            }
        );
        store
            .set_management_room(room_id!("!dm:hs"), user_id!("@staff:hs"))
            .unwrap();
        assert_eq!(
            store
                .management_room_owner(room_id!("!dm:hs"))
                .unwrap()
                .unwrap(),
            user_id!("@staff:hs")
        );
    }

    #[test]
    fn transaction_progress_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        let progress = TransactionProgress {
            events_done: 2,
            ephemeral_done: 0,
            completed: false,
        };
        Store::open(&path)
            .unwrap()
            .set_transaction_progress("7", progress)
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.transaction_progress("7").unwrap(), Some(progress));
        assert_eq!(store.transaction_progress("8").unwrap(), None);
    }

    #[test]
    fn a_newer_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(Store::open(&path), Err(Error::Invalid(_))));
    }
}
