//! History visibility for other servers: whether a server may read an event of a room, because
//! one of its users could see it. The rule mirrors the users' one (`visibility.rs`), with "the
//! user" read as "any user of the server":
//! `world_readable` at the event → yes; a user of the server joined at the event (or, for its own
//! membership event, by it) → yes; invited at the event and `invited` → yes; `shared` and a user
//! of the server joined now or at any point after → yes; otherwise no. A server that never had a
//! member in a room sees only what is world-readable.

use rusqlite::Connection;
use serde_json::Value as JsonValue;

use super::visibility::StateFields;
use crate::storage::state::KeyNid;
use crate::storage::{self, Result, events::EventRow, state};

/// What is known about one server while filtering events of one room; caches state lookups,
/// which consecutive events mostly share.
pub struct ServerViewer {
    server: String,
    room_id: String,
    /// The member state keys of the server's users who ever had a membership in the room.
    member_keys: Vec<KeyNid>,
    joins: Vec<i64>,
    currently_joined: bool,
    history_key: Option<KeyNid>,
    fields: StateFields,
}

impl ServerViewer {
    pub fn new(conn: &Connection, room_id: &str, server: &str) -> Result<ServerViewer> {
        Ok(ServerViewer {
            server: server.to_owned(),
            room_id: room_id.to_owned(),
            member_keys: storage::room_servers::server_member_keys(conn, room_id, server)?,
            joins: storage::room_servers::server_join_positions(conn, room_id, server)?,
            currently_joined: storage::room_servers::server_has_member(
                conn, room_id, server, "join",
            )?,
            history_key: state::key_nid(conn, "m.room.history_visibility", "")?,
            fields: StateFields::default(),
        })
    }

    pub fn can_see(&mut self, conn: &Connection, event: &EventRow) -> Result<bool> {
        if event.room_id != self.room_id {
            return Ok(false);
        }
        let visibility = self
            .fields
            .get(
                conn,
                event.state_before,
                self.history_key,
                "history_visibility",
            )?
            .unwrap_or_else(|| "shared".into());
        if visibility == "world_readable" {
            return Ok(true);
        }
        // A membership event of the server's own user counts with the membership it sets.
        let group = if self.is_own_member_event(event) {
            event.state_after
        } else {
            event.state_before
        };
        for index in 0..self.member_keys.len() {
            let key = Some(self.member_keys[index]);
            match self.fields.get(conn, group, key, "membership")?.as_deref() {
                Some("join") => return Ok(true),
                Some("invite") if visibility == "invited" => return Ok(true),
                _ => {}
            }
        }
        Ok(visibility == "shared"
            && (self.currently_joined || self.joins.iter().any(|j| *j > event.nid)))
    }

    fn is_own_member_event(&self, event: &EventRow) -> bool {
        let Ok(json) = serde_json::from_str::<JsonValue>(&event.json) else {
            return false;
        };
        json.get("type").and_then(JsonValue::as_str) == Some("m.room.member")
            && json
                .get("state_key")
                .and_then(JsonValue::as_str)
                .and_then(|user| user.split_once(':'))
                .is_some_and(|(_, server)| server == self.server)
    }
}
