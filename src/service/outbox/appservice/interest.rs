//! Which appservices are interested in what: an event (by its sender, a member event's target,
//! its room's id, aliases and namespace members), a room (for typing and receipts). The members
//! question is answered from `MemberCache`, read once per room and then kept up to date by the
//! membership events the outbox goes through, so deciding costs no read per event.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::UserId;
use serde_json::Value as JsonValue;

use crate::service::appservice::Registration;
use crate::storage;
use crate::storage::appservice_queue as queue;
use crate::storage::event_stream::StreamEvent;

/// Rooms whose namespace members are kept; beyond this the cache starts over.
const MAX_CACHED_ROOMS: usize = 100_000;

/// A registration the outbox sends to, and the newest event from before it was first seen.
pub(super) struct Target {
    pub(super) registration: Arc<Registration>,
    pub(super) since: i64,
}

/// Who among the targets is interested in a room, kept between reads.
#[derive(Default)]
pub(super) struct MemberCache {
    /// Per room, per target (by index), its joined or invited namespace users.
    rooms: HashMap<String, Vec<HashSet<String>>>,
}

impl MemberCache {
    /// The namespace members of `room`, per target; read once, then kept by [`MemberCache::saw`].
    pub(super) fn of(
        &mut self,
        conn: &rusqlite::Connection,
        room: &str,
        targets: &[Target],
    ) -> storage::Result<&Vec<HashSet<String>>> {
        if !self.rooms.contains_key(room) {
            if self.rooms.len() >= MAX_CACHED_ROOMS {
                self.rooms.clear();
            }
            let users = queue::joined_or_invited(conn, room)?;
            let per_target = targets
                .iter()
                .map(|t| {
                    users
                        .iter()
                        .filter(|u| in_namespace(t, u))
                        .cloned()
                        .collect()
                })
                .collect();
            self.rooms.insert(room.to_owned(), per_target);
        }
        Ok(&self.rooms[room])
    }

    /// A membership event went by: a cached room follows it.
    fn saw(&mut self, event: &StreamEvent, targets: &[Target]) {
        let (Some(user), Some(members)) = (
            event.state_key.as_deref(),
            self.rooms.get_mut(&event.room_id),
        ) else {
            return;
        };
        let present = matches!(event.membership.as_deref(), Some("join" | "invite"));
        for (index, target) in targets.iter().enumerate() {
            if in_namespace(target, user) {
                match present {
                    true => members[index].insert(user.to_owned()),
                    false => members[index].remove(user),
                };
            }
        }
    }
}

/// The targets (by index) interested in an event. Rejected and soft-failed events interest
/// nobody, nor do outliers other than invites (the only way a remote invite of a local user is
/// stored), nor events from before a target was first seen.
pub(super) fn interested_in_event(
    conn: &rusqlite::Connection,
    event: &StreamEvent,
    targets: &[Target],
    members: &mut MemberCache,
    aliases: &mut HashMap<String, Vec<bool>>,
) -> storage::Result<Vec<usize>> {
    let is_member_event = event.kind == "m.room.member";
    if is_member_event && event.accepted && !event.outlier {
        members.saw(event, targets);
    }
    if !event.accepted || (event.outlier && event.membership.as_deref() != Some("invite")) {
        return Ok(Vec::new());
    }
    let mut interested = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        if event.nid <= target.since {
            continue;
        }
        let by_user = in_namespace(target, &event.sender)
            || (is_member_event
                && event
                    .state_key
                    .as_deref()
                    .is_some_and(|user| in_namespace(target, user)));
        if by_user || room_interests(conn, &event.room_id, index, targets, members, aliases)? {
            interested.push(index);
        }
    }
    Ok(interested)
}

/// The targets with `receive_ephemeral` (by index) interested in a room.
pub(super) fn interested_in_room(
    conn: &rusqlite::Connection,
    room: &str,
    targets: &[Target],
    members: &mut MemberCache,
    aliases: &mut HashMap<String, Vec<bool>>,
) -> storage::Result<Vec<usize>> {
    let mut interested = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        if target.registration.receive_ephemeral
            && room_interests(conn, room, index, targets, members, aliases)?
        {
            interested.push(index);
        }
    }
    Ok(interested)
}

/// Whether target `index` is interested in everything of `room`: the room id in its room
/// namespace, an alias in its alias namespace (read once per call of the caller, in `aliases`),
/// or a joined or invited member in its user namespace.
fn room_interests(
    conn: &rusqlite::Connection,
    room: &str,
    index: usize,
    targets: &[Target],
    members: &mut MemberCache,
    aliases: &mut HashMap<String, Vec<bool>>,
) -> storage::Result<bool> {
    let registration = &targets[index].registration;
    if registration.rooms.iter().any(|n| n.matches(room)) {
        return Ok(true);
    }
    if targets.iter().any(|t| !t.registration.aliases.is_empty()) {
        if !aliases.contains_key(room) {
            let names = room_aliases(conn, room)?;
            let per_target = targets
                .iter()
                .map(|t| {
                    names
                        .iter()
                        .any(|alias| t.registration.aliases.iter().any(|n| n.matches(alias)))
                })
                .collect();
            aliases.insert(room.to_owned(), per_target);
        }
        if aliases[room][index] {
            return Ok(true);
        }
    }
    Ok(!members.of(conn, room, targets)?[index].is_empty())
}

/// The aliases of a room: those published in the directory, its canonical alias and alternative
/// aliases.
fn room_aliases(conn: &rusqlite::Connection, room: &str) -> storage::Result<Vec<String>> {
    let mut names = storage::rooms::aliases_of_room(conn, room)?;
    if let Some(content) = queue::canonical_alias_content(conn, room)?
        && let Ok(content) = serde_json::from_str::<JsonValue>(&content)
    {
        names.extend(
            content
                .get("alias")
                .into_iter()
                .chain(
                    content
                        .get("alt_aliases")
                        .and_then(JsonValue::as_array)
                        .into_iter()
                        .flatten(),
                )
                .filter_map(JsonValue::as_str)
                .map(str::to_owned),
        );
    }
    Ok(names)
}

/// Whether `user` is the target's own user or in its user namespace.
pub(super) fn in_namespace(target: &Target, user: &str) -> bool {
    UserId::parse(user).is_ok_and(|user| target.registration.is_in_user_namespace(&user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(yaml_namespaces: &str, since: i64) -> Target {
        let text = format!(
            "id: irc\nurl: http://127.0.0.1:1\nas_token: a\nhs_token: h\n\
             sender_localpart: ircbot\nnamespaces:\n{yaml_namespaces}"
        );
        let registration = Registration::parse(
            std::path::Path::new("irc.yaml"),
            &text,
            ruma::server_name!("hs1"),
        )
        .unwrap();
        Target {
            registration: Arc::new(registration),
            since,
        }
    }

    fn event(nid: i64, room: &str, sender: &str, member: Option<(&str, &str)>) -> StreamEvent {
        StreamEvent {
            nid,
            room_id: room.into(),
            sender: sender.into(),
            kind: match member {
                Some(_) => "m.room.member".into(),
                None => "m.room.message".into(),
            },
            state_key: member.map(|(user, _)| user.into()),
            membership: member.map(|(_, membership)| membership.into()),
            outlier: false,
            accepted: true,
        }
    }

    #[test]
    fn interest_follows_senders_targets_rooms_aliases_and_members() {
        let conn = crate::storage::migrated_in_memory();
        for room in ["!a:hs1", "!b:hs1", "!c:hs1"] {
            crate::storage::events::insert_room_txn(&conn, room, "11", "@bob:hs1", 0).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO room_memberships (room_id, user_id, membership, event_nid)
                 VALUES ('!a:hs1', '@irc_x:hs1', 'join', 1), ('!a:hs1', '@bob:hs1', 'join', 2),
                        ('!b:hs1', '@bob:hs1', 'join', 3);
             INSERT INTO room_aliases (alias, room_id, creator)
                 VALUES ('#irc_general:hs1', '!c:hs1', '@bob:hs1');",
        )
        .unwrap();
        let targets = [target(
            "  users: [{exclusive: false, regex: '@irc_.*'}]\n  \
             aliases: [{exclusive: false, regex: '#irc_.*'}]\n",
            0,
        )];
        let mut members = MemberCache::default();
        let mut interested = |e: &StreamEvent| {
            let mut aliases = HashMap::new();
            !interested_in_event(&conn, e, &targets, &mut members, &mut aliases)
                .unwrap()
                .is_empty()
        };
        // A room with a namespace member, one without, one with a namespace alias.
        assert!(interested(&event(10, "!a:hs1", "@bob:hs1", None)));
        assert!(!interested(&event(11, "!b:hs1", "@bob:hs1", None)));
        assert!(interested(&event(12, "!c:hs1", "@bob:hs1", None)));
        // The bot and namespace users as senders or targets, anywhere.
        assert!(interested(&event(13, "!b:hs1", "@ircbot:hs1", None)));
        let invite = event(14, "!b:hs1", "@bob:hs1", Some(("@irc_y:hs1", "invite")));
        assert!(interested(&invite));
        // The invite made room b one with a namespace member; leaving undoes it.
        assert!(interested(&event(15, "!b:hs1", "@bob:hs1", None)));
        let leave = event(16, "!b:hs1", "@irc_y:hs1", Some(("@irc_y:hs1", "leave")));
        assert!(interested(&leave));
        assert!(!interested(&event(17, "!b:hs1", "@bob:hs1", None)));
        // Rejected events, and events from before the appservice was first seen, never.
        let rejected = StreamEvent {
            accepted: false,
            ..event(18, "!a:hs1", "@irc_x:hs1", None)
        };
        assert!(!interested(&rejected));
        let old = [target(
            "  users: [{exclusive: false, regex: '@irc_.*'}]\n",
            100,
        )];
        let mut aliases = HashMap::new();
        let found = interested_in_event(
            &conn,
            &event(19, "!a:hs1", "@irc_x:hs1", None),
            &old,
            &mut MemberCache::default(),
            &mut aliases,
        )
        .unwrap();
        assert!(found.is_empty());
        // A room namespace takes every event of its rooms.
        let by_room = [target("  rooms: [{exclusive: false, regex: '!b:'}]\n", 0)];
        let found = interested_in_event(
            &conn,
            &event(20, "!b:hs1", "@bob:hs1", None),
            &by_room,
            &mut MemberCache::default(),
            &mut aliases,
        )
        .unwrap();
        assert_eq!(found, [0]);
    }
}
