//! Staff read receipts become WhatsApp's "mark as read" (the contact sees blue ticks): a staff
//! member's `m.read` receipt on a contact's bridged message in a portal is sent as `POST
//! /{phone-number-id}/messages` `{"messaging_product": "whatsapp", "status": "read",
//! "message_id"}`. WhatsApp marks the earlier messages of the chat read with it, so only a
//! message newer than the last one marked is sent, and each at most once.
//!
//! A receipt on another event of the portal (a staff answer, a notice, a reaction: clients put
//! receipts on the newest event they show) marks the contact's newest message read when it is
//! not newer than that event.
//!
//! The newest message marked per contact is kept in the bridge's own table
//! (`whatsapp_read_marks`) in the store's SQLite file, with its time (the ghost's event carries
//! the WhatsApp time), so a late receipt on an older message sends nothing; the newest message
//! each contact sent is kept beside it (`whatsapp_latest_inbound`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use bridge_toolkit::store::Direction;
use bridge_toolkit::{EphemeralEvent, Error};
use ruma::{EventId, OwnedEventId, RoomId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use super::WhatsAppBridge;
use super::cloud::CallError;

/// The `whatsapp_read_marks` table: the newest message marked read per contact.
#[derive(Clone)]
pub struct ReadMarks {
    conn: Arc<Mutex<Connection>>,
}

impl ReadMarks {
    pub fn open(path: &Path) -> Result<ReadMarks, Error> {
        ReadMarks::init(Connection::open(path)?)
    }

    #[cfg(test)]
    pub fn open_in_memory() -> Result<ReadMarks, Error> {
        ReadMarks::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<ReadMarks, Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS whatsapp_read_marks (
                 wa_id TEXT PRIMARY KEY NOT NULL,
                 wamid TEXT NOT NULL,
                 ts_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS whatsapp_latest_inbound (
                 wa_id TEXT PRIMARY KEY NOT NULL,
                 wamid TEXT NOT NULL,
                 ts_ms INTEGER NOT NULL
             );",
        )?;
        Ok(ReadMarks {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Whether marking `wamid` (sent at `ts_ms`) read would tell WhatsApp anything new: it is not
    /// the message marked last, nor older than it.
    pub fn is_news(&self, wa_id: &str, wamid: &str, ts_ms: u64) -> Result<bool, Error> {
        let last: Option<(String, i64)> = self.with(|c| {
            c.query_row(
                "SELECT wamid, ts_ms FROM whatsapp_read_marks WHERE wa_id = ?1",
                [wa_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        Ok(match last {
            None => true,
            Some((last_wamid, last_ts)) => {
                last_wamid != wamid && i64::try_from(ts_ms).unwrap_or(i64::MAX) >= last_ts
            }
        })
    }

    pub fn set(&self, wa_id: &str, wamid: &str, ts_ms: u64) -> Result<(), Error> {
        let ts_ms = i64::try_from(ts_ms).unwrap_or(i64::MAX);
        self.with(|c| {
            c.execute(
                "INSERT INTO whatsapp_read_marks (wa_id, wamid, ts_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (wa_id) DO UPDATE SET wamid = excluded.wamid, ts_ms = excluded.ts_ms",
                params![wa_id, wamid, ts_ms],
            )
        })?;
        Ok(())
    }
}

impl ReadMarks {
    /// Notes a message the contact sent (at `ts_ms`), if it is their newest.
    pub fn note_inbound(&self, wa_id: &str, wamid: &str, ts_ms: u64) -> Result<(), Error> {
        let ts_ms = i64::try_from(ts_ms).unwrap_or(i64::MAX);
        self.with(|c| {
            c.execute(
                "INSERT INTO whatsapp_latest_inbound (wa_id, wamid, ts_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (wa_id) DO UPDATE SET wamid = excluded.wamid, ts_ms = excluded.ts_ms
                 WHERE excluded.ts_ms >= whatsapp_latest_inbound.ts_ms",
                params![wa_id, wamid, ts_ms],
            )
        })?;
        Ok(())
    }

    /// The newest message the contact sent, with its time.
    pub fn latest_inbound(&self, wa_id: &str) -> Result<Option<(String, u64)>, Error> {
        let row: Option<(String, i64)> = self.with(|c| {
            c.query_row(
                "SELECT wamid, ts_ms FROM whatsapp_latest_inbound WHERE wa_id = ?1",
                [wa_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        Ok(row.map(|(wamid, ts)| (wamid, u64::try_from(ts).unwrap_or_default())))
    }
}

/// The events a receipt (`m.receipt` content) says `reader` read (`m.read`, public).
fn read_by(content: &serde_json::Value) -> Vec<(OwnedEventId, Vec<String>)> {
    content
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(event_id, receipts)| {
            let event_id = EventId::parse(event_id).ok()?;
            let readers: Vec<String> = receipts["m.read"].as_object()?.keys().cloned().collect();
            Some((event_id, readers))
        })
        .collect()
}

impl WhatsAppBridge {
    /// An ephemeral event: staff read receipts in portals mark the contact's messages read.
    pub(super) async fn receipt(&self, event: &EphemeralEvent) -> Result<(), Error> {
        if event.kind != "m.receipt" {
            return Ok(());
        }
        let Some(room) = &event.room_id else {
            return Ok(());
        };
        let Some(wa_id) = self.store.portal_remote(room)? else {
            return Ok(());
        };
        // The newest contact message some staff member read, with its time.
        let mut newest: Option<(String, u64)> = None;
        for (event_id, readers) in read_by(&event.content) {
            if !self.read_by_staff(&readers).await {
                continue;
            }
            let ts = self.event_time(room, &event_id).await;
            // A contact's reaction has a wamid too, but is not a message to mark read.
            let reaction = self.reactions.by_event(&event_id)?.is_some();
            let candidate = match self.store.message_by_event(&event_id)? {
                Some(message)
                    if message.direction == Direction::Inbound
                        && message.room_id == *room
                        && !reaction =>
                {
                    message.remote_id.map(|wamid| (wamid, ts))
                }
                // Another event: the contact's newest message, if it is not newer.
                _ => self
                    .read_marks
                    .latest_inbound(&wa_id)?
                    .filter(|(_, latest_ts)| ts > 0 && *latest_ts <= ts),
            };
            let Some((wamid, ts)) = candidate else {
                continue;
            };
            if newest
                .as_ref()
                .is_none_or(|(_, newest_ts)| ts >= *newest_ts)
            {
                newest = Some((wamid, ts));
            }
        }
        let Some((wamid, ts)) = newest else {
            return Ok(());
        };
        if !self.read_marks.is_news(&wa_id, &wamid, ts)? {
            return Ok(());
        }
        match self.cloud.mark_read(&wamid).await {
            Ok(()) => self.read_marks.set(&wa_id, &wamid, ts),
            Err(CallError::Refused { reason, .. }) => {
                // E.g. a message over 30 days old: there is nothing to retry.
                tracing::warn!(room.id = %room, %reason, "WhatsApp refused a mark as read");
                self.read_marks.set(&wa_id, &wamid, ts)
            }
            Err(
                CallError::Retryable(reason)
                | CallError::Transient(reason)
                | CallError::InDoubt(reason),
            ) => {
                // Marking read again is harmless: the homeserver retries the transaction.
                Err(Error::Bridge(reason))
            }
        }
    }

    async fn read_by_staff(&self, readers: &[String]) -> bool {
        for reader in readers {
            if let Ok(user) = UserId::parse(reader.as_str())
                && !self.client.is_bridge_user(&user)
                && self.portals.staff.is_staff(&user).await
            {
                return true;
            }
        }
        false
    }

    /// The time of a ghost's event (the WhatsApp time it was sent with), read as the bot; zero
    /// when it cannot be read, which orders it before everything marked already.
    async fn event_time(&self, room: &RoomId, event_id: &EventId) -> u64 {
        match self.client.event(self.client.bot(), room, event_id).await {
            Ok(event) => event["origin_server_ts"].as_u64().unwrap_or_default(),
            Err(e) => {
                tracing::warn!(room.id = %room, event.id = %event_id, error = %e,
                    "cannot read the time of a message read");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_newer_messages_are_news() {
        let marks = ReadMarks::open_in_memory().unwrap();
        assert!(marks.is_news("1555", "wamid.B", 2000).unwrap());
        marks.set("1555", "wamid.B", 2000).unwrap();
        assert!(!marks.is_news("1555", "wamid.B", 2000).unwrap());
        assert!(!marks.is_news("1555", "wamid.A", 1000).unwrap());
        assert!(marks.is_news("1555", "wamid.C", 2000).unwrap());
        assert!(marks.is_news("1555", "wamid.D", 3000).unwrap());
        assert!(marks.is_news("1666", "wamid.A", 1000).unwrap());
    }

    #[test]
    fn remembers_each_contacts_newest_message() {
        let marks = ReadMarks::open_in_memory().unwrap();
        assert_eq!(marks.latest_inbound("1555").unwrap(), None);
        marks.note_inbound("1555", "wamid.B", 2000).unwrap();
        marks.note_inbound("1555", "wamid.A", 1000).unwrap();
        assert_eq!(
            marks.latest_inbound("1555").unwrap(),
            Some(("wamid.B".to_owned(), 2000))
        );
        marks.note_inbound("1555", "wamid.C", 3000).unwrap();
        assert_eq!(marks.latest_inbound("1555").unwrap().unwrap().0, "wamid.C");
    }

    #[test]
    fn reads_public_receipts_only() {
        let content = json!({
            "$a": {"m.read": {"@alice:hs": {"ts": 1}}},
            "$b": {"m.read.private": {"@alice:hs": {"ts": 2}}},
        });
        let read = read_by(&content);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0.as_str(), "$a");
        assert_eq!(read[0].1, vec!["@alice:hs".to_owned()]);
    }
}
