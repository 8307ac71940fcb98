//! Reactions both ways, within what WhatsApp allows: one reaction per person per message, which a
//! new emoji replaces and an empty one removes.
//!
//! - Inbound: a contact's reaction becomes their ghost's `m.reaction`; a new emoji on the same
//!   message redacts the ghost's earlier reaction and sends the new one; a removal (the webhook's
//!   `emoji` empty or left out) redacts it.
//! - Outbound: a staff `m.reaction` on a bridged message becomes a WhatsApp reaction. All staff
//!   share the one business number, so WhatsApp shows the newest staff reaction; redacting it
//!   sends the one before it that is still there, or the documented removal (`"emoji": ""`).
//!
//! Which Matrix reaction stands for which (contact, message) is kept in the bridge's own table
//! (`whatsapp_reactions`) in the store's SQLite file: the toolkit store maps one remote id to one
//! event, and a reaction is keyed by the message it is on, not by its own wamid. Rows of
//! redacted reactions are deleted, so the rows of a key are the reactions still shown, oldest
//! first.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bridge_toolkit::{Error, MatrixEvent};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::WhatsAppBridge;

/// Who reacted: the contact (inbound) or the business (outbound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Contact,
    Business,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Contact => "contact",
            Side::Business => "business",
        }
    }
}

/// One Matrix reaction standing for a WhatsApp one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    pub side: Side,
    /// The contact whose chat it is in.
    pub wa_id: String,
    /// The wamid of the message reacted to.
    pub target: String,
    pub event_id: OwnedEventId,
    pub emoji: String,
}

/// The `whatsapp_reactions` table.
#[derive(Clone)]
pub struct Reactions {
    conn: Arc<Mutex<Connection>>,
}

impl Reactions {
    pub fn open(path: &Path) -> Result<Reactions, Error> {
        Reactions::init(Connection::open(path)?)
    }

    #[cfg(test)]
    pub fn open_in_memory() -> Result<Reactions, Error> {
        Reactions::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Reactions, Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS whatsapp_reactions (
                 id INTEGER PRIMARY KEY,
                 side TEXT NOT NULL CHECK (side IN ('contact', 'business')),
                 wa_id TEXT NOT NULL,
                 target TEXT NOT NULL,
                 event_id TEXT NOT NULL UNIQUE,
                 emoji TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS whatsapp_reactions_key
                 ON whatsapp_reactions (side, wa_id, target);",
        )?;
        Ok(Reactions {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// The newest reaction still shown of `side` on `target` in `wa_id`'s chat.
    pub fn current(
        &self,
        side: Side,
        wa_id: &str,
        target: &str,
    ) -> Result<Option<Reaction>, Error> {
        let row = self.with(|c| {
            c.query_row(
                "SELECT event_id, emoji FROM whatsapp_reactions
                 WHERE side = ?1 AND wa_id = ?2 AND target = ?3 ORDER BY id DESC LIMIT 1",
                params![side.as_str(), wa_id, target],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
        })?;
        row.map(|(event_id, emoji)| {
            Ok(Reaction {
                side,
                wa_id: wa_id.to_owned(),
                target: target.to_owned(),
                event_id: parse_event_id(&event_id)?,
                emoji,
            })
        })
        .transpose()
    }

    /// The reaction an event is, if it stands for a WhatsApp one.
    pub fn by_event(&self, event_id: &EventId) -> Result<Option<Reaction>, Error> {
        let row = self.with(|c| {
            c.query_row(
                "SELECT side, wa_id, target, emoji FROM whatsapp_reactions WHERE event_id = ?1",
                [event_id.as_str()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
        })?;
        Ok(row.map(|(side, wa_id, target, emoji)| Reaction {
            side: if side == "contact" {
                Side::Contact
            } else {
                Side::Business
            },
            wa_id,
            target,
            event_id: event_id.to_owned(),
            emoji,
        }))
    }

    /// Records a reaction now shown (the newest of its key).
    pub fn add(&self, reaction: &Reaction) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "INSERT INTO whatsapp_reactions (side, wa_id, target, event_id, emoji)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
                params![
                    reaction.side.as_str(),
                    reaction.wa_id,
                    reaction.target,
                    reaction.event_id.as_str(),
                    reaction.emoji
                ],
            )
        })?;
        Ok(())
    }

    /// Forgets a reaction that was redacted.
    pub fn remove(&self, event_id: &EventId) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "DELETE FROM whatsapp_reactions WHERE event_id = ?1",
                [event_id.as_str()],
            )
        })?;
        Ok(())
    }
}

fn parse_event_id(text: &str) -> Result<OwnedEventId, Error> {
    text.try_into()
        .map_err(|e| Error::Invalid(format!("stored event id {text:?}: {e}")))
}

/// The body of a WhatsApp reaction (an empty `emoji` removes the business's reaction).
fn reaction_message(wa_id: &str, target: &str, emoji: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_id,
        "type": "reaction",
        "reaction": {"message_id": target, "emoji": emoji},
    })
}

impl WhatsAppBridge {
    /// A contact's reaction webhook (`wamid`) mirrored as their ghost: added, changed (the old
    /// one redacted) or removed. Answers the event the webhook became, if any.
    pub(super) async fn mirror_reaction(
        &self,
        wa_id: &str,
        ghost: &UserId,
        room: &RoomId,
        message: &Value,
        ts: Option<MilliSecondsSinceUnixEpoch>,
        wamid: &str,
    ) -> Result<Option<OwnedEventId>, Error> {
        let target = message["reaction"]["message_id"]
            .as_str()
            .unwrap_or_default();
        // A removed reaction arrives with the `emoji` left out (or empty).
        let emoji = message["reaction"]["emoji"].as_str().unwrap_or_default();
        let Some(target_event) = self.store.event_for_remote(target)? else {
            return Ok(None); // a reaction to a message never bridged
        };
        let previous = self.reactions.current(Side::Contact, wa_id, target)?;
        if let Some(previous) = &previous
            && previous.emoji == emoji
        {
            return Ok(None); // the same reaction again
        }
        let redaction = match &previous {
            Some(previous) => {
                let reason = if emoji.is_empty() {
                    "reaction removed on WhatsApp"
                } else {
                    "reaction changed on WhatsApp"
                };
                let redaction = self
                    .client
                    .redact(ghost, room, &previous.event_id, Some(reason))
                    .await?;
                self.reactions.remove(&previous.event_id)?;
                Some(redaction)
            }
            None => None,
        };
        if emoji.is_empty() {
            return Ok(redaction);
        }
        let event_id = self
            .inbound_reaction(ghost, room, &target_event, emoji, ts, wamid)
            .await?;
        self.reactions.add(&Reaction {
            side: Side::Contact,
            wa_id: wa_id.to_owned(),
            target: target.to_owned(),
            event_id: event_id.clone(),
            emoji: emoji.to_owned(),
        })?;
        Ok(Some(event_id))
    }

    /// A staff reaction to a bridged message becomes the business's WhatsApp reaction.
    pub(super) async fn outbound_reaction(
        &self,
        event: &MatrixEvent,
        wa_id: &str,
    ) -> Result<(), Error> {
        let relation = &event.content["m.relates_to"];
        let (Some("m.annotation"), Some(target), Some(key)) = (
            relation["rel_type"].as_str(),
            relation["event_id"].as_str(),
            relation["key"].as_str(),
        ) else {
            return Ok(());
        };
        let Ok(target) = EventId::parse(target) else {
            return Ok(());
        };
        let Some(wamid) = self.store.remote_for_event(&target)? else {
            return Ok(()); // a reaction to something WhatsApp never saw
        };
        if key.is_empty() || !self.outbound_claim(event)? {
            return Ok(());
        }
        self.send_out(event, &reaction_message(wa_id, &wamid, key))
            .await?;
        if self.store.remote_for_event(&event.event_id)?.is_some() {
            self.reactions.add(&Reaction {
                side: Side::Business,
                wa_id: wa_id.to_owned(),
                target: wamid,
                event_id: event.event_id.clone(),
                emoji: key.to_owned(),
            })?;
        }
        Ok(())
    }

    /// A staff redaction of a bridged staff reaction (`redaction` redacts `reaction`): WhatsApp
    /// then shows the staff reaction before it that is still there, or none.
    pub(super) async fn withdraw_reaction(
        &self,
        redaction: &MatrixEvent,
        reaction: &Reaction,
    ) -> Result<(), Error> {
        let was_shown = self
            .reactions
            .current(Side::Business, &reaction.wa_id, &reaction.target)?
            .is_some_and(|current| current.event_id == reaction.event_id);
        self.reactions.remove(&reaction.event_id)?;
        if !was_shown || !self.outbound_claim(redaction)? {
            return Ok(()); // WhatsApp shows a newer staff reaction; nothing changes there
        }
        let emoji = self
            .reactions
            .current(Side::Business, &reaction.wa_id, &reaction.target)?
            .map(|earlier| earlier.emoji)
            .unwrap_or_default();
        let body = reaction_message(&reaction.wa_id, &reaction.target, &emoji);
        self.send_out(redaction, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::event_id;

    fn reaction(side: Side, event: &EventId, emoji: &str) -> Reaction {
        Reaction {
            side,
            wa_id: "447700900123".into(),
            target: "wamid.A".into(),
            event_id: event.to_owned(),
            emoji: emoji.into(),
        }
    }

    #[test]
    fn the_newest_reaction_still_shown_is_current() {
        let reactions = Reactions::open_in_memory().unwrap();
        let wa_id = "447700900123";
        assert_eq!(
            reactions.current(Side::Business, wa_id, "wamid.A").unwrap(),
            None
        );
        reactions
            .add(&reaction(Side::Business, event_id!("$thumbs"), "👍"))
            .unwrap();
        reactions
            .add(&reaction(Side::Business, event_id!("$heart"), "❤️"))
            .unwrap();
        reactions
            .add(&reaction(Side::Contact, event_id!("$smile"), "😀"))
            .unwrap();
        let current = reactions.current(Side::Business, wa_id, "wamid.A").unwrap();
        assert_eq!(current.unwrap().emoji, "❤️");
        assert_eq!(
            reactions
                .by_event(event_id!("$smile"))
                .unwrap()
                .unwrap()
                .side,
            Side::Contact
        );
        reactions.remove(event_id!("$heart")).unwrap();
        let current = reactions.current(Side::Business, wa_id, "wamid.A").unwrap();
        assert_eq!(current.unwrap().event_id, event_id!("$thumbs"));
        assert_eq!(reactions.by_event(event_id!("$heart")).unwrap(), None);
    }

    #[test]
    fn a_removal_is_an_empty_emoji() {
        assert_eq!(
            reaction_message("1555", "wamid.A", "")["reaction"],
            json!({"message_id": "wamid.A", "emoji": ""})
        );
    }
}
