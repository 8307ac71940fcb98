//! The rooms part of `/sync`, read in one database read: joined rooms (timeline since the token,
//! `limited`, `prev_batch`, the state the client lacks, the summary), invites and knocks with
//! stripped state, and rooms left since the token with the events up to the leave.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;
use serde_json::{Value as JsonValue, json};

use crate::service::Result;
use crate::service::rooms::{StreamToken, Viewer, client_events_for};
use crate::storage::{self, events::EventRow, events::Page, state};

/// State types shown with an invite or knock, as the specification recommends.
const STRIPPED_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// How many other members name a room in its summary.
const HEROES: usize = 5;

/// What the client asked for, from the sync filter.
pub struct RoomsQuery<'a> {
    pub user: &'a str,
    pub device: &'a str,
    pub since: Option<i64>,
    pub upto: i64,
    pub full_state: bool,
    pub timeline_limit: usize,
    pub include_leave: bool,
    pub rooms: Option<&'a [String]>,
    pub not_rooms: &'a [String],
    pub types: &'a [String],
    pub not_types: &'a [String],
    pub senders: &'a [String],
    pub not_senders: &'a [String],
    /// Users the client ignores: their invites are not shown either.
    pub ignored: &'a [String],
    /// Joined rooms to include even without new events (their account data changed).
    pub touched: &'a [String],
    /// Lazy-loading of members, when the filter asks for it.
    pub lazy: Option<LazyMembers<'a>>,
}

/// The filter's part of a rooms query, owned, so that room chunks of an initial sync can be read
/// in parallel (each chunk on its own reader) from one shared copy.
pub struct RoomsParams {
    pub user: String,
    pub device: String,
    pub since: Option<i64>,
    pub full_state: bool,
    pub timeline_limit: usize,
    pub include_leave: bool,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub types: Vec<String>,
    pub not_types: Vec<String>,
    pub senders: Vec<String>,
    pub not_senders: Vec<String>,
    /// With lazy-loading: whether redundant members were asked for, and those already sent to
    /// the device per room.
    pub lazy: Option<(bool, HashMap<String, HashSet<String>>)>,
}

impl RoomsParams {
    /// The query up to event position `upto`, leaving out `ignored` users (whose events join
    /// `not_senders`), including the `touched` rooms even without new events.
    pub fn query<'a>(
        &'a self,
        upto: i64,
        not_senders: &'a [String],
        ignored: &'a [String],
        touched: &'a [String],
    ) -> RoomsQuery<'a> {
        RoomsQuery {
            user: &self.user,
            device: &self.device,
            since: self.since,
            upto,
            full_state: self.full_state,
            timeline_limit: self.timeline_limit,
            include_leave: self.include_leave,
            rooms: self.rooms.as_deref(),
            not_rooms: &self.not_rooms,
            types: &self.types,
            not_types: &self.not_types,
            senders: &self.senders,
            not_senders,
            ignored,
            touched,
            lazy: self
                .lazy
                .as_ref()
                .map(|(include_redundant, sent)| LazyMembers {
                    include_redundant: *include_redundant,
                    sent,
                }),
        }
    }
}

/// Lazy-loaded members: only the member events of the timeline's senders (and the user's own)
/// are sent, each once per device unless redundant members were asked for.
pub struct LazyMembers<'a> {
    pub include_redundant: bool,
    /// Members already sent to this device, per room.
    pub sent: &'a HashMap<String, HashSet<String>>,
}

#[derive(Default)]
pub struct RoomsSync {
    pub join: Vec<JoinedRoom>,
    pub invite: Vec<(String, Vec<JsonValue>)>,
    pub knock: Vec<(String, Vec<JsonValue>)>,
    pub leave: Vec<JoinedRoom>,
}

impl RoomsSync {
    pub fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.invite.is_empty()
            && self.knock.is_empty()
            && self.leave.is_empty()
    }

    /// Appends the rooms of another chunk.
    pub fn extend(&mut self, other: RoomsSync) {
        self.join.extend(other.join);
        self.invite.extend(other.invite);
        self.knock.extend(other.knock);
        self.leave.extend(other.leave);
    }
}

/// A room's timeline and state in a sync (left rooms use the same shape without a summary).
pub struct JoinedRoom {
    pub room_id: String,
    /// Notification and highlight counts since the user's read receipts.
    pub unread: storage::push_actions::UnreadCounts,
    /// Member events sent in this response under lazy-loading, to remember for the device.
    pub lazy_sent: Vec<String>,
    pub timeline: Vec<JsonValue>,
    pub limited: bool,
    pub prev_batch: Option<String>,
    pub state: Vec<JsonValue>,
    pub summary: Option<Summary>,
}

pub struct Summary {
    pub heroes: Vec<String>,
    pub joined: u64,
    pub invited: u64,
}

/// The rooms part of a sync, given the user's memberships (read in the same transaction).
pub fn sync_rooms(
    c: &Connection,
    query: &RoomsQuery<'_>,
    memberships: &[storage::rooms::RoomMembershipRow],
) -> Result<RoomsSync> {
    let mut out = RoomsSync::default();
    for membership in memberships {
        let room = membership.room_id.as_str();
        if membership.forgotten
            || query
                .rooms
                .is_some_and(|rooms| !rooms.iter().any(|r| r == room))
            || query.not_rooms.iter().any(|r| r == room)
        {
            continue;
        }
        let changed_membership = query.since.is_none_or(|since| membership.event_nid > since);
        match membership.membership.as_str() {
            "join" => {
                if let Some(joined) = joined_room(c, query, room, membership.event_nid)? {
                    out.join.push(joined);
                }
            }
            "invite" if changed_membership => {
                let stripped = stripped_state(c, room, membership.event_nid)?;
                let inviter = stripped
                    .last()
                    .and_then(|e| e.get("sender"))
                    .and_then(JsonValue::as_str);
                if !inviter.is_some_and(|sender| query.ignored.iter().any(|u| u == sender)) {
                    out.invite.push((room.to_owned(), stripped));
                }
            }
            "knock" if changed_membership => out.knock.push((
                room.to_owned(),
                stripped_state(c, room, membership.event_nid)?,
            )),
            "leave" | "ban"
                if query.since.is_some() && changed_membership
                    || query.since.is_none() && query.include_leave =>
            {
                if let Some(left) = left_room(c, query, room, membership.event_nid)? {
                    out.leave.push(left);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The latest visible events of a room in (`after`, `upto`], newest last, and whether more are
/// left before them.
fn timeline(
    c: &Connection,
    query: &RoomsQuery<'_>,
    room: &str,
    after: Option<i64>,
    upto: i64,
) -> Result<(Vec<EventRow>, bool)> {
    let mut rows = storage::events::page_events(
        c,
        &Page {
            room_id: room,
            from: upto + 1,
            to: after,
            backwards: true,
            limit: query.timeline_limit + 1,
            types: query.types,
            not_types: query.not_types,
            senders: query.senders,
            not_senders: query.not_senders,
        },
    )?;
    let limited = rows.len() > query.timeline_limit;
    rows.truncate(query.timeline_limit);
    let mut viewer = Viewer::new(c, room, query.user)?;
    let mut visible = Vec::with_capacity(rows.len());
    for row in rows.into_iter().rev() {
        if viewer.can_see(c, &row)? {
            visible.push(row);
        }
    }
    Ok((visible, limited))
}

fn joined_room(
    c: &Connection,
    query: &RoomsQuery<'_>,
    room: &str,
    join_nid: i64,
) -> Result<Option<JoinedRoom>> {
    // A room joined since the token is new to the client: send it whole, as in an initial sync.
    let fresh = query.full_state || query.since.is_none_or(|since| join_nid > since);
    let after = if fresh { None } else { query.since };
    let (rows, limited) = timeline(c, query, room, after, query.upto)?;
    if rows.is_empty() && !fresh && !query.touched.iter().any(|r| r == room) {
        return Ok(None);
    }
    let state_rows = if fresh {
        // The full state at the start of the timeline.
        let group = match rows.first() {
            Some(first) => first.state_before,
            None => storage::events::state_at_position(c, room, query.upto)?,
        };
        match group {
            Some(group) => load_rows(c, state_nids(c, group, query.lazy.is_some())?.into_iter())?,
            None => Vec::new(),
        }
    } else if limited {
        // What changed between the token and the start of the timeline.
        let first = rows.first().map_or(query.upto + 1, |r| r.nid);
        state_changes_between(c, room, query.since.unwrap_or(0), first)?
    } else {
        Vec::new()
    };
    let (state_rows, lazy_sent) = match &query.lazy {
        Some(lazy) => lazy_state(c, query, room, lazy, &rows, state_rows, fresh)?,
        None => (state_rows, Vec::new()),
    };
    let members_changed = fresh || rows.iter().chain(&state_rows).any(is_member_event);
    let summary = members_changed
        .then(|| summary(c, room, query.user))
        .transpose()?;
    let prev_batch = rows
        .first()
        .map(|r| StreamToken { events: r.nid - 1 }.encode());
    Ok(Some(JoinedRoom {
        room_id: room.to_owned(),
        unread: storage::push_actions::unread_counts(c, query.user, room)?,
        lazy_sent,
        timeline: without_room_id(client_events_for(c, &rows, query.user, query.device)?),
        limited,
        prev_batch,
        state: without_room_id(client_events_for(c, &state_rows, query.user, query.device)?),
        summary,
    }))
}

/// Narrows the state to the member events the timeline needs, adding those the device lacks.
fn lazy_state(
    c: &Connection,
    query: &RoomsQuery<'_>,
    room: &str,
    lazy: &LazyMembers<'_>,
    timeline: &[EventRow],
    state_rows: Vec<EventRow>,
    fresh: bool,
) -> Result<(Vec<EventRow>, Vec<String>)> {
    let already = lazy.sent.get(room);
    let mut needed: HashSet<String> = timeline.iter().filter_map(sender_of).collect();
    needed.insert(query.user.to_owned());
    if !lazy.include_redundant && !fresh {
        needed.retain(|member| !already.is_some_and(|sent| sent.contains(member)));
    }
    let mut kept: Vec<EventRow> = Vec::new();
    let mut have: HashSet<String> = HashSet::new();
    for row in state_rows {
        match member_key(&row) {
            Some(member) if needed.contains(&member) => {
                have.insert(member);
                kept.push(row);
            }
            Some(_) => {}
            None => kept.push(row),
        }
    }
    // Senders whose member event is not among the state changes: take it from the state at the
    // start of the timeline.
    let group = match timeline.first() {
        Some(first) => first.state_before,
        None => storage::events::state_at_position(c, room, query.upto)?,
    };
    if let Some(group) = group {
        let missing: Vec<String> = needed
            .iter()
            .filter(|m| !have.contains(*m))
            .cloned()
            .collect();
        for member in missing {
            if let Some(key) = state::key_nid(c, "m.room.member", &member)?
                && let Some(nid) = state::lookup(c, group, key)?
                && let Some(row) = storage::events::get_event_by_nid(c, nid)?
            {
                have.insert(member);
                kept.push(row);
            }
        }
    }
    kept.sort_by_key(|r| r.nid);
    Ok((kept, have.into_iter().collect()))
}

fn sender_of(row: &EventRow) -> Option<String> {
    let event: JsonValue = serde_json::from_str(&row.json).ok()?;
    event.get("sender")?.as_str().map(str::to_owned)
}

/// The member a member event is about, or None for other events.
fn member_key(row: &EventRow) -> Option<String> {
    let event: JsonValue = serde_json::from_str(&row.json).ok()?;
    if event.get("type")?.as_str()? != "m.room.member" {
        return None;
    }
    event.get("state_key")?.as_str().map(str::to_owned)
}

fn left_room(
    c: &Connection,
    query: &RoomsQuery<'_>,
    room: &str,
    leave_nid: i64,
) -> Result<Option<JoinedRoom>> {
    let (rows, limited) = timeline(c, query, room, query.since, leave_nid)?;
    let prev_batch = rows
        .first()
        .map(|r| StreamToken { events: r.nid - 1 }.encode());
    Ok(Some(JoinedRoom {
        room_id: room.to_owned(),
        unread: Default::default(),
        lazy_sent: Vec::new(),
        timeline: without_room_id(client_events_for(c, &rows, query.user, query.device)?),
        limited,
        prev_batch,
        state: Vec::new(),
        summary: None,
    }))
}

/// The events of a state group; with lazy-loading, without member events (the needed ones are
/// added afterwards), so a large room's members are never all read.
fn state_nids(c: &Connection, group: i64, skip_members: bool) -> Result<Vec<i64>> {
    let entries = state::load_state(c, group)?;
    if !skip_members {
        return Ok(entries.into_values().collect());
    }
    let keys: Vec<i64> = entries.keys().copied().collect();
    let kinds = state::keys_of(c, &keys)?;
    Ok(entries
        .into_iter()
        .filter(|(key, _)| {
            kinds
                .get(key)
                .is_none_or(|(kind, _)| kind != "m.room.member")
        })
        .map(|(_, event)| event)
        .collect())
}

fn load_rows(c: &Connection, nids: impl Iterator<Item = i64>) -> Result<Vec<EventRow>> {
    let mut rows = Vec::new();
    for nid in nids {
        if let Some(row) = storage::events::get_event_by_nid(c, nid)? {
            rows.push(row);
        }
    }
    rows.sort_by_key(|r| r.nid);
    Ok(rows)
}

/// The latest state event per key among the room's events in (`after`, `before`).
fn state_changes_between(
    c: &Connection,
    room: &str,
    after: i64,
    before: i64,
) -> Result<Vec<EventRow>> {
    let mut latest: HashMap<(String, String), EventRow> = HashMap::new();
    for (key, row) in storage::events::state_events_between(c, room, after, before)? {
        latest.insert(key, row);
    }
    let mut rows: Vec<EventRow> = latest.into_values().collect();
    rows.sort_by_key(|r| r.nid);
    Ok(rows)
}

fn is_member_event(row: &EventRow) -> bool {
    serde_json::from_str::<JsonValue>(&row.json)
        .ok()
        .is_some_and(|e| e.get("type").and_then(JsonValue::as_str) == Some("m.room.member"))
}

fn summary(c: &Connection, room: &str, user: &str) -> Result<Summary> {
    let joined = storage::rooms::members(c, room, Some("join"))?;
    let invited = storage::rooms::members(c, room, Some("invite"))?;
    let heroes = joined
        .iter()
        .chain(&invited)
        .map(|m| m.user_id.clone())
        .filter(|u| u != user)
        .take(HEROES)
        .collect();
    Ok(Summary {
        heroes,
        joined: joined.len() as u64,
        invited: invited.len() as u64,
    })
}

/// The stripped state shown with an invite or knock, ending with the membership event itself.
fn stripped_state(c: &Connection, room: &str, membership_nid: i64) -> Result<Vec<JsonValue>> {
    let mut nids = Vec::new();
    for kind in STRIPPED_TYPES {
        if let Some(nid) = state::current_state_event(c, room, kind, "")? {
            nids.push(nid);
        }
    }
    nids.push(membership_nid);
    let mut events = Vec::new();
    for row in load_rows(c, nids.into_iter())? {
        let event: JsonValue =
            serde_json::from_str(&row.json).map_err(storage::StorageError::from)?;
        // An invite from another server, to a room this server is not in, carries the room's
        // state as that server described it.
        if let Some(state) = event
            .pointer("/unsigned/invite_room_state")
            .and_then(JsonValue::as_array)
        {
            events.extend(state.iter().cloned());
        }
        events.push(json!({
            "type": event.get("type"),
            "state_key": event.get("state_key"),
            "content": event.get("content"),
            "sender": event.get("sender"),
        }));
    }
    Ok(events)
}

/// Sync serves events without their room id, which the surrounding map already gives.
fn without_room_id(mut events: Vec<JsonValue>) -> Vec<JsonValue> {
    for event in &mut events {
        if let Some(object) = event.as_object_mut() {
            object.remove("room_id");
        }
    }
    events
}
