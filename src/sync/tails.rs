//! The latest events of each active room, in memory, so that a long-poll woken by a new message
//! answers without reading the database (`hot.rs`). The tails follow every commit: the database
//! writer calls `feed` after each committed batch, before any writer learns of its commit, and
//! `feed` reads the timeline events committed since the last batch, in stream order. So every
//! timeline event with a position in (`floor`, `position`] is in its room's tail unless trimmed
//! away, and each tail knows from which position on it is complete.
//!
//! What the tails hold is exactly what the timeline shows at commit time. Whatever later changes
//! an event (a redaction) marks it stale, and a stale event sends the reader to the database.
//! Events that enter the timeline other than by being committed as timeline events (an outlier
//! accepted later) would not be seen here: such a path must call `forget_room`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::Value as JsonValue;

use crate::service::rooms::client_event;
use crate::storage::{self, events::EventRow};

/// Events kept per room: more than a long-poll that keeps up ever needs.
const EVENTS_PER_ROOM: usize = 50;
/// Rooms kept; the least recently active is dropped beyond this.
const MAX_ROOMS: usize = 4_096;
/// Committed events read per query while feeding.
const FEED_BATCH: usize = 1_000;

/// One timeline event as committed, with what the fast path checks before serving it.
pub struct TailEvent {
    pub nid: i64,
    pub sender: String,
    /// A state event (its change may concern members, summaries, visibility).
    pub is_state: bool,
    /// It relates to or redacts another event (bundling and redaction then matter).
    pub relates: bool,
    /// The event it redacts, for a redaction.
    redacts: Option<String>,
    /// Changed since it was committed (redacted): only the database has it right.
    stale: AtomicBool,
    row: EventRow,
    /// The client format without `room_id`, made once on first use and shared by every reader.
    client: OnceLock<Option<JsonValue>>,
}

impl TailEvent {
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// The event as `/sync` shows it (without `room_id`), or None if it cannot be rendered.
    pub fn client_json(&self) -> Option<&JsonValue> {
        self.client
            .get_or_init(|| {
                let mut event = client_event(&self.row).ok()?;
                event.as_object_mut()?.remove("room_id");
                Some(event)
            })
            .as_ref()
    }
}

struct Tail {
    /// Every timeline event of the room after this position is in `events`.
    complete_after: i64,
    events: VecDeque<Arc<TailEvent>>,
}

#[derive(Default)]
struct Inner {
    /// Fed up to this position; None until the first commit after start-up sets the floor.
    position: Option<i64>,
    /// A room without a tail has no timeline event after this position (the start-up position,
    /// or a later one once tails have been dropped).
    complete_after_untracked: i64,
    rooms: HashMap<String, Tail>,
}

/// The tails of every recently active room.
#[derive(Default)]
pub struct RoomTails(Mutex<Inner>);

/// A room's events in a window of positions, when the tail covers the whole window.
pub struct Window {
    pub events: Vec<Arc<TailEvent>>,
}

/// The fields of a stored event the fast path needs to know about it.
#[derive(Deserialize)]
struct Fields {
    sender: String,
    state_key: Option<serde::de::IgnoredAny>,
    redacts: Option<String>,
    #[serde(default)]
    content: FieldsContent,
}

#[derive(Deserialize, Default)]
struct FieldsContent {
    #[serde(rename = "m.relates_to")]
    relates_to: Option<serde::de::IgnoredAny>,
    redacts: Option<String>,
}

impl RoomTails {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in what the last commit added (called on the writer thread after each commit). A
    /// failed read drops every tail: the fast path then waits for new events to fill them again.
    pub fn feed(&self, conn: &Connection) {
        if let Err(e) = self.try_feed(conn) {
            tracing::warn!(error = %e, "cannot follow committed events; sync reads the database");
            let mut inner = self.inner();
            inner.rooms.clear();
            inner.position = None;
        }
    }

    fn try_feed(&self, conn: &Connection) -> storage::Result<()> {
        let Some(mut position) = self.inner().position else {
            let start = storage::events::max_stream_ordering(conn)?;
            let mut inner = self.inner();
            inner.position = Some(start);
            inner.complete_after_untracked = start;
            return Ok(());
        };
        loop {
            let rows = storage::push_actions::events_after(conn, position, FEED_BATCH)?;
            let more = rows.len() == FEED_BATCH;
            let events: Vec<TailEvent> = rows.into_iter().filter_map(tail_event).collect();
            let mut inner = self.inner();
            for event in events {
                position = position.max(event.nid);
                inner.push(event);
            }
            inner.position = Some(position.max(inner.position.unwrap_or(0)));
            if !more {
                return Ok(());
            }
        }
    }

    /// The position every tail is fed up to, None before the first commit.
    pub fn position(&self) -> Option<i64> {
        self.inner().position
    }

    /// The room's timeline events in (`after`, `upto`], oldest first, or None when the tail does
    /// not reach back to `after`.
    pub fn window(&self, room: &str, after: i64, upto: i64) -> Option<Window> {
        let inner = self.inner();
        match inner.rooms.get(room) {
            None => {
                (inner.complete_after_untracked <= after).then(|| Window { events: Vec::new() })
            }
            Some(tail) if tail.complete_after <= after => Some(Window {
                events: tail
                    .events
                    .iter()
                    .filter(|e| e.nid > after && e.nid <= upto)
                    .cloned()
                    .collect(),
            }),
            Some(_) => None,
        }
    }

    /// Forgets what is known of a room, for a path that changes its timeline without committing
    /// new timeline events.
    pub fn forget_room(&self, room: &str) {
        let mut inner = self.inner();
        let position = inner.position.unwrap_or(i64::MAX);
        let tail = inner.rooms.entry(room.to_owned()).or_insert_with(|| Tail {
            complete_after: position,
            events: VecDeque::new(),
        });
        tail.complete_after = position;
        tail.events.clear();
    }
}

impl Inner {
    fn push(&mut self, event: TailEvent) {
        let room = event.row.room_id.clone();
        if let Some(target) = &event.redacts
            && let Some(tail) = self.rooms.get(&room)
            && let Some(redacted) = tail.events.iter().find(|e| e.row.event_id == *target)
        {
            redacted.stale.store(true, Ordering::Release);
        }
        if !self.rooms.contains_key(&room) && self.rooms.len() >= MAX_ROOMS {
            self.drop_least_active();
        }
        let untracked = self.complete_after_untracked;
        let tail = self.rooms.entry(room).or_insert_with(|| Tail {
            complete_after: untracked,
            events: VecDeque::new(),
        });
        tail.events.push_back(Arc::new(event));
        while tail.events.len() > EVENTS_PER_ROOM {
            if let Some(old) = tail.events.pop_front() {
                tail.complete_after = old.nid;
            }
        }
    }

    /// Drops the tail whose latest event is oldest; rooms without a tail are then only known to
    /// be complete after that event.
    fn drop_least_active(&mut self) {
        let oldest = self
            .rooms
            .iter()
            .map(|(room, tail)| {
                (
                    tail.events.back().map_or(tail.complete_after, |e| e.nid),
                    room,
                )
            })
            .min()
            .map(|(last, room)| (last, room.clone()));
        if let Some((last, room)) = oldest {
            self.rooms.remove(&room);
            self.complete_after_untracked = self.complete_after_untracked.max(last);
        }
    }
}

fn tail_event(row: EventRow) -> Option<TailEvent> {
    let fields: Fields = match serde_json::from_str(&row.json) {
        Ok(fields) => fields,
        Err(e) => {
            tracing::warn!(event.id = %row.event_id, error = %e, "stored event without a sender");
            return None;
        }
    };
    let redacts = fields.redacts.or(fields.content.redacts);
    Some(TailEvent {
        nid: row.nid,
        sender: fields.sender,
        is_state: fields.state_key.is_some(),
        relates: fields.content.relates_to.is_some() || redacts.is_some(),
        redacts,
        stale: AtomicBool::new(false),
        row,
        client: OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(nid: i64, room: &str, json: &str) -> EventRow {
        EventRow {
            nid,
            event_id: format!("$e{nid}"),
            room_id: room.into(),
            json: json.into(),
            state_before: None,
            state_after: None,
            redacted_by: None,
        }
    }

    fn message(nid: i64, room: &str) -> TailEvent {
        tail_event(row(
            nid,
            room,
            r#"{"sender":"@a:x","type":"m.room.message","content":{}}"#,
        ))
        .unwrap()
    }

    #[test]
    fn windows_are_served_only_where_the_tail_is_complete() {
        let tails = RoomTails::default();
        {
            let mut inner = tails.inner();
            inner.position = Some(10);
            inner.complete_after_untracked = 10;
            for nid in 11..=80 {
                inner.push(message(nid, "!a:x"));
            }
            inner.position = Some(80);
        }
        // Trimmed to the last 50: complete after 30.
        assert!(tails.window("!a:x", 29, 80).is_none());
        let window = tails.window("!a:x", 70, 75).unwrap();
        assert_eq!(
            window.events.iter().map(|e| e.nid).collect::<Vec<_>>(),
            vec![71, 72, 73, 74, 75]
        );
        // A room with no event since start-up has none in any window after the floor.
        assert!(tails.window("!b:x", 10, 80).unwrap().events.is_empty());
        assert!(tails.window("!b:x", 9, 80).is_none());
    }

    #[test]
    fn a_redaction_makes_its_target_stale_and_relations_are_marked() {
        let tails = RoomTails::default();
        let mut inner = tails.inner();
        inner.push(message(1, "!a:x"));
        inner.push(
            tail_event(row(
                2,
                "!a:x",
                r#"{"sender":"@a:x","type":"m.room.redaction","redacts":"$e1","content":{}}"#,
            ))
            .unwrap(),
        );
        let tail = &inner.rooms["!a:x"];
        assert!(tail.events[0].is_stale());
        assert!(tail.events[1].relates);
        assert!(!tail.events[0].is_state);
    }

    #[test]
    fn dropping_a_room_raises_what_untracked_rooms_are_complete_after() {
        let tails = RoomTails::default();
        let mut inner = tails.inner();
        for i in 0..MAX_ROOMS as i64 + 1 {
            inner.push(message(i + 1, &format!("!r{i}:x")));
        }
        assert_eq!(inner.rooms.len(), MAX_ROOMS);
        assert!(!inner.rooms.contains_key("!r0:x"));
        assert_eq!(inner.complete_after_untracked, 1);
    }
}
