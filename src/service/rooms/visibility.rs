//! History visibility: whether a user may see an event, by the room's `history_visibility` and the
//! user's membership at that event, following the specification's algorithm:
//! world_readable → yes; joined at the event → yes; `shared` and joined at any point after → yes;
//! invited at the event and `invited` → yes; otherwise no.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::Value as JsonValue;

use crate::storage::{self, Result, events::EventRow, state};

/// What is known about one user while filtering events of one room; caches state lookups, which
/// consecutive events mostly share.
pub struct Viewer {
    user_id: String,
    room_id: String,
    joins: Vec<i64>,
    currently_joined: bool,
    forgotten: bool,
    history_key: Option<i64>,
    member_key: Option<i64>,
    fields: StateFields,
}

impl Viewer {
    pub fn new(conn: &Connection, room_id: &str, user_id: &str) -> Result<Viewer> {
        let joins = storage::events::join_positions(conn, room_id, user_id)?;
        let membership = storage::rooms::membership(conn, room_id, user_id)?;
        let currently_joined = membership.as_ref().is_some_and(|m| m.membership == "join");
        let forgotten = membership.as_ref().is_some_and(|m| m.forgotten);
        Ok(Viewer {
            user_id: user_id.to_owned(),
            room_id: room_id.to_owned(),
            joins,
            currently_joined,
            forgotten,
            history_key: state::key_nid(conn, "m.room.history_visibility", "")?,
            member_key: state::key_nid(conn, "m.room.member", user_id)?,
            fields: StateFields::default(),
        })
    }

    pub fn is_joined(&self) -> bool {
        self.currently_joined
    }

    pub fn has_forgotten(&self) -> bool {
        self.forgotten
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
        // A forgotten room's history is gone for the user, except what anyone may read.
        if self.forgotten {
            return Ok(visibility == "world_readable");
        }
        if visibility == "world_readable" {
            return Ok(true);
        }
        // The user's own membership event counts with the membership it sets.
        let own_member_event = is_member_event_of(event, &self.user_id);
        let group = if own_member_event {
            event.state_after
        } else {
            event.state_before
        };
        let membership = self
            .fields
            .get(conn, group, self.member_key, "membership")?;
        match membership.as_deref() {
            Some("join") => return Ok(true),
            Some("invite") if visibility == "invited" => return Ok(true),
            _ => {}
        }
        if visibility == "shared"
            && (self.currently_joined || self.joins.iter().any(|j| *j > event.nid))
        {
            return Ok(true);
        }
        // A user always sees the event that made them leave or be banned.
        Ok(own_member_event)
    }
}

fn is_member_event_of(event: &EventRow, user_id: &str) -> bool {
    let Ok(json) = serde_json::from_str::<JsonValue>(&event.json) else {
        return false;
    };
    json.get("type").and_then(JsonValue::as_str) == Some("m.room.member")
        && json.get("state_key").and_then(JsonValue::as_str) == Some(user_id)
}

/// Content fields of state events, read at a state group and kept per (group, key): what a
/// visibility check asks again and again for the events of one page.
#[derive(Default)]
pub(super) struct StateFields(HashMap<(i64, i64), Option<String>>);

impl StateFields {
    /// One content field of the state event at (group, key), if both are known and it exists.
    pub(super) fn get(
        &mut self,
        conn: &Connection,
        group: Option<i64>,
        key: Option<i64>,
        field: &str,
    ) -> Result<Option<String>> {
        let (Some(group), Some(key)) = (group, key) else {
            return Ok(None);
        };
        if let Some(hit) = self.0.get(&(group, key)) {
            return Ok(hit.clone());
        }
        let value = match state::lookup(conn, group, key)? {
            Some(nid) => storage::events::get_event_by_nid(conn, nid)?
                .and_then(|row| content_field(&row, field)),
            None => None,
        };
        self.0.insert((group, key), value.clone());
        Ok(value)
    }
}

fn content_field(row: &EventRow, field: &str) -> Option<String> {
    let json: JsonValue = serde_json::from_str(&row.json).ok()?;
    json.get("content")?.get(field)?.as_str().map(str::to_owned)
}
