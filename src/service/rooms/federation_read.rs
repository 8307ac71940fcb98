//! Room history read by other servers: single PDUs (`/event`), the state before an event with its
//! auth chain (`/state`, `/state_ids`), an event's auth chain (`/event_auth`), and walks back
//! along `prev_events` (`/backfill`, `/get_missing_events`). PDUs leave in their federation form:
//! the stored, signed JSON without this server's `unsigned` annotations.
//!
//! Every answer goes through `ServerViewer`: an event the asking server may not see is refused
//! (403) when it was asked for by id, and handed over redacted inside a walk, so the walk's DAG
//! stays connected without leaking content. A walk whose starting events are all invisible is
//! refused. The auth chain is one recursive query over `event_auth` (`storage::dag`).

use std::collections::{BinaryHeap, HashMap, HashSet};

use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, RoomId, ServerName};
use rusqlite::Connection;
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::super::{Error, Result, Services};
use super::append::pdu_from_row;
use super::server_visibility::ServerViewer;
use crate::room;
use crate::service::federation_in::acl::acl_allows_in;
use crate::storage::{self, dag::DagEvent, events::EventRow, state};

/// The most events one `/backfill` or `/get_missing_events` answer holds.
const MAX_WALK: usize = 100;

/// A PDU as sent to another server.
pub struct FederationPdu {
    pub event_id: OwnedEventId,
    pub json: Box<RawJsonValue>,
}

/// The state before an event, and the auth chain of that state.
pub struct StateAtEvent {
    pub state: Vec<FederationPdu>,
    pub auth_chain: Vec<FederationPdu>,
}

/// `/get_missing_events` parameters.
pub struct MissingEventsQuery {
    pub earliest_events: Vec<OwnedEventId>,
    pub latest_events: Vec<OwnedEventId>,
    pub limit: usize,
    pub min_depth: i64,
}

impl Services {
    /// `/event/{eventId}`: one PDU, if `origin` may see it.
    pub async fn federation_pdu(
        &self,
        origin: &ServerName,
        event_id: &EventId,
    ) -> Result<FederationPdu> {
        let (origin, id) = (origin.to_owned(), event_id.to_owned());
        self.db.read(move |c| Ok(pdu(c, &origin, &id))).await?
    }

    /// `/state/{roomId}` and `/state_ids/{roomId}`: the state before `event_id` and its auth
    /// chain, if `origin` may see that event.
    pub async fn federation_state_at(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StateAtEvent> {
        let (origin, room, id) = (origin.to_owned(), room_id.to_owned(), event_id.to_owned());
        self.db
            .read(move |c| Ok(state_at(c, &origin, &room, &id)))
            .await?
    }

    /// `/event_auth/{roomId}/{eventId}`: the auth chain of an event `origin` may see.
    pub async fn federation_event_auth(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<FederationPdu>> {
        let (origin, room, id) = (origin.to_owned(), room_id.to_owned(), event_id.to_owned());
        self.db
            .read(move |c| Ok(event_auth(c, &origin, &room, &id)))
            .await?
    }

    /// `/backfill/{roomId}`: the events `from` and those before them along `prev_events`,
    /// deepest first, at most `limit` (capped at 100).
    pub async fn federation_backfill(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: Vec<OwnedEventId>,
        limit: usize,
    ) -> Result<Vec<FederationPdu>> {
        let (origin, room) = (origin.to_owned(), room_id.to_owned());
        self.db
            .read(move |c| Ok(backfill(c, &origin, &room, &from, limit.min(MAX_WALK))))
            .await?
    }

    /// `/get_missing_events/{roomId}`: a breadth-first walk back from `latest_events` along
    /// `prev_events`, not past `earliest_events` nor below `min_depth`, at most `limit` events
    /// (capped at 100), returned oldest first. The latest events themselves are not included.
    pub async fn federation_missing_events(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        query: MissingEventsQuery,
    ) -> Result<Vec<FederationPdu>> {
        let (origin, room) = (origin.to_owned(), room_id.to_owned());
        self.db
            .read(move |c| Ok(missing_events(c, &origin, &room, &query)))
            .await?
    }
}

fn pdu(c: &Connection, origin: &ServerName, event_id: &EventId) -> Result<FederationPdu> {
    let row =
        storage::events::get_event(c, event_id.as_str())?.ok_or_else(|| not_found(event_id))?;
    let mut read = RoomRead::open(c, &row.room_id, origin)?;
    read.require_visible(&row)?;
    federation_form(&row)
}

fn state_at(
    c: &Connection,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<StateAtEvent> {
    let mut read = RoomRead::open(c, room_id.as_str(), origin)?;
    let event = read.require_event(event_id)?;
    read.require_visible(&event.row)?;
    let group = event.row.state_before.ok_or_else(|| {
        Error::NotFound(format!(
            "the state at {event_id} is not known to this server"
        ))
    })?;
    let mut nids: Vec<i64> = state::load_state(c, group)?.into_values().collect();
    nids.sort_unstable();
    let rows = nids
        .into_iter()
        .filter_map(|n| storage::events::get_event_by_nid(c, n).transpose())
        .collect::<storage::Result<Vec<_>>>()?;
    let chain = read.auth_chain_of(&rows)?;
    Ok(StateAtEvent {
        state: rows.iter().map(federation_form).collect::<Result<_>>()?,
        auth_chain: chain.iter().map(federation_form).collect::<Result<_>>()?,
    })
}

fn event_auth(
    c: &Connection,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<Vec<FederationPdu>> {
    let mut read = RoomRead::open(c, room_id.as_str(), origin)?;
    let event = read.require_event(event_id)?;
    read.require_visible(&event.row)?;
    let chain = read.auth_chain_of(std::slice::from_ref(&event.row))?;
    chain.iter().map(federation_form).collect()
}

fn backfill(
    c: &Connection,
    origin: &ServerName,
    room_id: &RoomId,
    from: &[OwnedEventId],
    limit: usize,
) -> Result<Vec<FederationPdu>> {
    let mut read = RoomRead::open(c, room_id.as_str(), origin)?;
    let mut starts = Vec::new();
    for id in from {
        starts.extend(read.event(id)?);
    }
    if starts.is_empty() {
        return Err(Error::NotFound(format!(
            "none of the events to backfill from is known in {room_id}"
        )));
    }
    read.require_any_visible(&starts)?;
    let events = backfill_walk(c, starts, limit)?;
    events
        .iter()
        .map(|e| read.form_for_origin(&e.row))
        .collect()
}

fn missing_events(
    c: &Connection,
    origin: &ServerName,
    room_id: &RoomId,
    query: &MissingEventsQuery,
) -> Result<Vec<FederationPdu>> {
    let mut read = RoomRead::open(c, room_id.as_str(), origin)?;
    let mut latest = Vec::new();
    for id in &query.latest_events {
        latest.extend(read.event(id)?);
    }
    // Latest events this server does not have give nothing to walk back from.
    if latest.is_empty() {
        return Ok(Vec::new());
    }
    read.require_any_visible(&latest)?;
    let events = missing_events_walk(c, latest, query)?;
    events
        .iter()
        .map(|e| read.form_for_origin(&e.row))
        .collect()
}

/// One room as one server reads it, inside a database read.
struct RoomRead<'c> {
    conn: &'c Connection,
    room_id: String,
    rules: RoomVersionRules,
    viewer: ServerViewer,
}

impl<'c> RoomRead<'c> {
    /// `M_NOT_FOUND` for a room this server does not know.
    fn open(conn: &'c Connection, room_id: &str, origin: &ServerName) -> Result<RoomRead<'c>> {
        let room = storage::events::get_room(conn, room_id)?.ok_or_else(|| {
            Error::NotFound(format!("room {room_id} is not known to this server"))
        })?;
        if !acl_allows_in(conn, origin, room_id)? {
            return Err(Error::Forbidden(format!(
                "{origin} is denied by the server ACL of {room_id}"
            )));
        }
        let version = ruma::RoomVersionId::try_from(room.room_version.as_str())
            .map_err(|e| Error::Internal(format!("stored room version is invalid: {e}")))?;
        let rules = room::rules_for(&version)
            .ok_or_else(|| Error::Internal(format!("room version {version} is not supported")))?;
        Ok(RoomRead {
            conn,
            room_id: room_id.to_owned(),
            rules,
            viewer: ServerViewer::new(conn, room_id, origin.as_str())?,
        })
    }

    fn event(&self, event_id: &EventId) -> Result<Option<DagEvent>> {
        Ok(storage::dag::room_event(
            self.conn,
            &self.room_id,
            event_id.as_str(),
        )?)
    }

    fn require_event(&self, event_id: &EventId) -> Result<DagEvent> {
        self.event(event_id)?.ok_or_else(|| not_found(event_id))
    }

    fn require_visible(&mut self, row: &EventRow) -> Result<()> {
        if self.viewer.can_see(self.conn, row)? {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this server may not see event {} of {}",
                row.event_id, self.room_id
            )))
        }
    }

    fn require_any_visible(&mut self, events: &[DagEvent]) -> Result<()> {
        for event in events {
            if self.viewer.can_see(self.conn, &event.row)? {
                return Ok(());
            }
        }
        Err(Error::Forbidden(format!(
            "this server may not see these events of {}",
            self.room_id
        )))
    }

    /// The event as the asking server may have it: whole when it may see it, redacted otherwise.
    fn form_for_origin(&mut self, row: &EventRow) -> Result<FederationPdu> {
        if self.viewer.can_see(self.conn, row)? {
            return federation_form(row);
        }
        let pdu = pdu_from_row(row)?;
        let redacted = room::redact_pdu(&pdu, &self.rules, None)
            .map_err(|e| Error::Internal(format!("cannot redact {}: {e}", row.event_id)))?;
        match serde_json::to_value(&redacted.json) {
            Ok(JsonValue::Object(json)) => to_federation_form(row, json),
            _ => Err(Error::Internal(format!(
                "cannot serialise {}",
                row.event_id
            ))),
        }
    }

    /// The auth chain of `events`. From room version 12 on, the create event is not listed in
    /// `auth_events` but authorises every event, so it joins the chain of any other event.
    fn auth_chain_of(&self, events: &[EventRow]) -> Result<Vec<EventRow>> {
        let nids: Vec<i64> = events.iter().map(|e| e.nid).collect();
        let mut chain = storage::dag::auth_chain(self.conn, &self.room_id, &nids)?;
        if self.rules.authorization.room_create_event_id_as_room_id {
            let room_id = RoomId::parse(&self.room_id)
                .map_err(|e| Error::Internal(format!("stored room id is invalid: {e}")))?;
            let create =
                room::room_create_event_id(&room_id).map_err(|e| Error::Internal(e.to_string()))?;
            let needed = events.iter().any(|e| e.event_id != create.as_str())
                && !chain.iter().any(|e| e.event_id == create.as_str());
            if needed && let Some(row) = storage::events::get_event(self.conn, create.as_str())? {
                chain.insert(0, row);
            }
        }
        Ok(chain)
    }
}

/// Deepest first from `starts`, following `prev_events`, each event once.
fn backfill_walk(conn: &Connection, starts: Vec<DagEvent>, limit: usize) -> Result<Vec<DagEvent>> {
    let mut seen: HashSet<i64> = HashSet::new();
    let mut pending: HashMap<i64, DagEvent> = HashMap::new();
    // Ordered by (depth, stream ordering): the deepest, then most recently stored, comes first.
    let mut queue: BinaryHeap<(i64, i64)> = BinaryHeap::new();
    for event in starts {
        if seen.insert(event.row.nid) {
            queue.push((event.depth, event.row.nid));
            pending.insert(event.row.nid, event);
        }
    }
    let mut events = Vec::new();
    while events.len() < limit {
        let Some((_, nid)) = queue.pop() else {
            break;
        };
        let Some(event) = pending.remove(&nid) else {
            continue;
        };
        for prev in storage::dag::prev_events(conn, nid)? {
            if seen.insert(prev.row.nid) {
                queue.push((prev.depth, prev.row.nid));
                pending.insert(prev.row.nid, prev);
            }
        }
        events.push(event);
    }
    Ok(events)
}

/// Breadth-first from the latest events, as `/get_missing_events` asks; oldest first.
fn missing_events_walk(
    conn: &Connection,
    latest: Vec<DagEvent>,
    query: &MissingEventsQuery,
) -> Result<Vec<DagEvent>> {
    let limit = query.limit.min(MAX_WALK);
    let mut seen: HashSet<String> = query
        .earliest_events
        .iter()
        .chain(&query.latest_events)
        .map(|id| id.to_string())
        .collect();
    let mut front: Vec<i64> = latest.iter().map(|e| e.row.nid).collect();
    let mut events: Vec<DagEvent> = Vec::new();
    while !front.is_empty() && events.len() < limit {
        let mut next = Vec::new();
        'front: for nid in front {
            for prev in storage::dag::prev_events(conn, nid)? {
                if events.len() >= limit {
                    break 'front;
                }
                if prev.depth < query.min_depth || !seen.insert(prev.row.event_id.clone()) {
                    continue;
                }
                next.push(prev.row.nid);
                events.push(prev);
            }
        }
        front = next;
    }
    events.sort_by_key(|e| (e.depth, e.row.nid));
    Ok(events)
}

fn not_found(event_id: &EventId) -> Error {
    Error::NotFound(format!("event {event_id} is not known to this server"))
}

/// The stored PDU without `unsigned`, which holds this server's annotations, not signed data.
fn federation_form(row: &EventRow) -> Result<FederationPdu> {
    let json: serde_json::Map<String, JsonValue> = serde_json::from_str(&row.json)
        .map_err(|e| Error::Internal(format!("stored event {} is not JSON: {e}", row.event_id)))?;
    to_federation_form(row, json)
}

fn to_federation_form(
    row: &EventRow,
    mut json: serde_json::Map<String, JsonValue>,
) -> Result<FederationPdu> {
    json.remove("unsigned");
    let event_id = EventId::parse(&row.event_id)
        .map_err(|e| Error::Internal(format!("stored event id is invalid: {e}")))?;
    let json = serde_json::value::to_raw_value(&json)
        .map_err(|e| Error::Internal(format!("cannot serialise {event_id}: {e}")))?;
    Ok(FederationPdu { event_id, json })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::events::{NewEvent, insert_event_txn, insert_room_txn};

    /// A forked DAG: create ← a ← {b, c} ← d, with depths 1, 2, 3, 3, 4.
    fn forked_room() -> Connection {
        let conn = crate::storage::migrated_in_memory();
        insert_room_txn(&conn, "!r:x", "10", "@u:x", 0).unwrap();
        for (id, prev, depth) in [
            ("$create", &[][..], 1),
            ("$a", &["$create"][..], 2),
            ("$b", &["$a"][..], 3),
            ("$c", &["$a"][..], 3),
            ("$d", &["$b", "$c"][..], 4),
        ] {
            let prev: Vec<String> = prev.iter().map(|s| s.to_string()).collect();
            let json = crate::storage::json_with_edges(&prev, &[]);
            insert_event_txn(
                &conn,
                &NewEvent {
                    event_id: id,
                    room_id: "!r:x",
                    sender: "@u:x",
                    kind: "m.room.message",
                    state_key: None,
                    membership: None,
                    depth,
                    origin_server_ts: 0,
                    json: &json,
                    prev_events: &prev,
                    state_before: None,
                    txn: None,
                },
            )
            .unwrap();
        }
        conn
    }

    fn event(conn: &Connection, id: &str) -> DagEvent {
        storage::dag::room_event(conn, "!r:x", id).unwrap().unwrap()
    }

    fn ids(events: Vec<DagEvent>) -> Vec<String> {
        events.into_iter().map(|e| e.row.event_id).collect()
    }

    fn event_ids(ids: &[&str]) -> Vec<OwnedEventId> {
        ids.iter().map(|id| EventId::parse(id).unwrap()).collect()
    }

    #[test]
    fn backfill_goes_deepest_first_and_visits_a_fork_once() {
        let conn = forked_room();
        let all = backfill_walk(&conn, vec![event(&conn, "$d")], 10).unwrap();
        assert_eq!(ids(all), ["$d", "$c", "$b", "$a", "$create"]);
        let page = backfill_walk(&conn, vec![event(&conn, "$b"), event(&conn, "$c")], 2).unwrap();
        assert_eq!(ids(page), ["$c", "$b"]);
    }

    #[test]
    fn missing_events_fill_the_gap_oldest_first() {
        let conn = forked_room();
        let query = |earliest: &[&str], limit: usize, min_depth: i64| MissingEventsQuery {
            earliest_events: event_ids(earliest),
            latest_events: event_ids(&["$d"]),
            limit,
            min_depth,
        };
        let latest = || vec![event(&conn, "$d")];
        let walk = |q: MissingEventsQuery| ids(missing_events_walk(&conn, latest(), &q).unwrap());
        assert_eq!(walk(query(&["$a"], 10, 0)), ["$b", "$c"]);
        assert_eq!(walk(query(&[], 10, 0)), ["$create", "$a", "$b", "$c"]);
        assert_eq!(walk(query(&[], 3, 0)), ["$a", "$b", "$c"]);
        assert_eq!(walk(query(&[], 10, 3)), ["$b", "$c"]);
    }
}
