use ruma::RoomVersionId;
use ruma::events::StateEventType;
use serde_json::{Value, json};

use super::*;
use crate::room::SUPPORTED;
use crate::room::testing::{
    Branch, TestRoom, default_power_levels, member, power_levels, room_name, user,
};

/// Timestamps on the forks start well after the main line's.
const FORK: u64 = 100_000;

/// The power levels of the test rooms with bob at 50 and `extra` users; from v12 the creator is
/// never listed.
fn power_with(version: &RoomVersionId, extra: &[(&str, i64)]) -> Value {
    let mut users = serde_json::Map::new();
    if *version != RoomVersionId::V12 {
        users.insert(user("alice").to_string(), json!(100));
    }
    users.insert(user("bob").to_string(), json!(50));
    for (name, level) in extra {
        users.insert(user(name).to_string(), json!(level));
    }
    default_power_levels(Value::Object(users))
}

/// A room where alice (creator), bob (moderator at 50) and carol (0) are joined and the room is
/// named "Original", forked into two identical branches.
fn forked_room(version: &RoomVersionId) -> (TestRoom, Branch, Branch) {
    let mut room = TestRoom::new(version.clone(), "alice");
    room.invite_and_join("alice", "bob");
    room.invite_and_join("alice", "carol");
    room.send("alice", power_levels(power_with(version, &[])));
    room.send("alice", room_name("Original"));
    let (a, b) = (room.main.clone(), room.main.clone());
    (room, a, b)
}

/// Resolves both orders of the two branches, checks they agree and with a resolution fed the
/// naive full auth chains, and returns the result.
fn resolve_both_ways(room: &TestRoom, a: &Branch, b: &Branch) -> StateMap<OwnedEventId> {
    let forward = resolve_state(
        &room.rules,
        &[a.state.clone(), b.state.clone()],
        room.fetch_event(),
    )
    .unwrap();
    let backward = resolve_state(
        &room.rules,
        &[b.state.clone(), a.state.clone()],
        room.fetch_event(),
    )
    .unwrap();
    assert_eq!(
        forward, backward,
        "the order of the state sets must not matter"
    );
    assert_eq!(
        forward,
        resolve_with_full_auth_chains(room, &[a.state.clone(), b.state.clone()])
    );
    forward
}

/// Ruma's resolution given each set's complete auth chain, without the shared-part shortcut.
fn resolve_with_full_auth_chains(
    room: &TestRoom,
    sets: &[StateMap<OwnedEventId>],
) -> StateMap<OwnedEventId> {
    let fetch = room.fetch_event();
    let chains = sets
        .iter()
        .map(|set| {
            auth_chain(set.values(), &fetch, &HashSet::new())
                .into_iter()
                .collect()
        })
        .collect();
    ruma::state_res::resolve(
        &room.rules.authorization,
        room.rules.state_res.v2_rules().unwrap(),
        sets.iter(),
        chains,
        &fetch,
        |conflicted| Some(conflicted_state_subgraph(conflicted, &fetch)),
    )
    .unwrap()
}

fn name_in(room: &TestRoom, state: &StateMap<OwnedEventId>) -> Value {
    room.content_at(state, StateEventType::RoomName, "")["name"].clone()
}

fn key(kind: StateEventType, state_key: &str) -> (StateEventType, String) {
    (kind, state_key.to_owned())
}

#[test]
fn a_demotion_beats_the_demoted_moderators_concurrent_ban() {
    for version in SUPPORTED {
        let (mut room, mut a, mut b) = forked_room(version);
        let demotion = room.send_on(
            &mut a,
            "alice",
            power_levels(power_with(version, &[("bob", 0)])),
            FORK + 2_000,
        );
        let carol_before =
            b.state[&key(StateEventType::RoomMember, user("carol").as_str())].clone();
        // The ban is earlier than the demotion, yet the demotion is applied first: power events
        // are ordered by their senders' power before time.
        room.send_on(&mut b, "bob", member("carol", "ban"), FORK + 1_000);

        let resolved = resolve_both_ways(&room, &a, &b);
        assert_eq!(
            resolved[&key(StateEventType::RoomPowerLevels, "")],
            demotion.event_id,
            "{version}"
        );
        assert_eq!(
            resolved[&key(StateEventType::RoomMember, user("carol").as_str())],
            carol_before,
            "{version}"
        );
    }
}

#[test]
fn a_power_change_applies_before_a_later_concurrent_name_change_it_forbids() {
    for version in SUPPORTED {
        let (mut room, mut a, mut b) = forked_room(version);
        let original = a.state[&key(StateEventType::RoomName, "")].clone();
        let mut locked = power_with(version, &[]);
        locked["events"] = json!({ "m.room.name": 100 });
        room.send_on(&mut a, "alice", power_levels(locked), FORK + 1_000);
        room.send_on(&mut b, "bob", room_name("Bob's room"), FORK + 5_000);

        let resolved = resolve_both_ways(&room, &a, &b);
        assert_eq!(
            resolved[&key(StateEventType::RoomName, "")],
            original,
            "{version}"
        );
        assert_eq!(name_in(&room, &resolved), "Original");
    }
}

#[test]
fn concurrent_names_on_the_same_power_levels_are_ordered_by_time() {
    for version in SUPPORTED {
        for (alice_at, bob_at, winner) in [(2_000, 1_000, "Alice's"), (1_000, 2_000, "Bob's")] {
            let (mut room, mut a, mut b) = forked_room(version);
            room.send_on(&mut a, "alice", room_name("Alice's"), FORK + alice_at);
            room.send_on(&mut b, "bob", room_name("Bob's"), FORK + bob_at);
            let resolved = resolve_both_ways(&room, &a, &b);
            assert_eq!(
                name_in(&room, &resolved),
                winner,
                "{version}: the later name wins"
            );
        }
    }
}

#[test]
fn a_name_based_on_newer_power_levels_beats_a_later_name_based_on_older_ones() {
    for version in SUPPORTED {
        let (mut room, mut a, mut b) = forked_room(version);
        let raised = power_levels(power_with(version, &[("dave", 10)]));
        let new_power = room.send_on(&mut a, "alice", raised, FORK + 1_000);
        room.send_on(&mut a, "alice", room_name("After the change"), FORK + 2_000);
        room.send_on(&mut b, "bob", room_name("Much later"), FORK + 9_000);

        let resolved = resolve_both_ways(&room, &a, &b);
        assert_eq!(
            resolved[&key(StateEventType::RoomPowerLevels, "")],
            new_power.event_id
        );
        assert_eq!(
            name_in(&room, &resolved),
            "After the change",
            "{version}: mainline order beats time"
        );
    }
}

#[test]
fn unconflicted_state_passes_through_and_one_set_resolves_to_itself() {
    let (mut room, mut a, b) = forked_room(&RoomVersionId::V12);
    assert_eq!(resolve_both_ways(&room, &a, &b), a.state);
    let single = resolve_state(
        &room.rules,
        std::slice::from_ref(&a.state),
        room.fetch_event(),
    )
    .unwrap();
    assert_eq!(single, a.state);
    assert!(
        resolve_state(&room.rules, &[], room.fetch_event())
            .unwrap()
            .is_empty()
    );

    room.send_on(&mut a, "alice", room_name("Only here"), FORK);
    let resolved = resolve_both_ways(&room, &a, &b);
    assert_eq!(name_in(&room, &resolved), "Only here");
    assert_eq!(resolved.len(), a.state.len());
}

#[test]
fn the_conflicted_state_subgraph_holds_the_paths_between_conflicted_events() {
    let mut room = TestRoom::new(RoomVersionId::V12, "alice");
    let mut ids = Vec::new();
    for level in [10, 20, 30] {
        let content = default_power_levels(json!({ user("bob").as_str(): level }));
        ids.push(room.send("alice", power_levels(content)).event_id.clone());
    }
    let conflicted = StateMap::from([(
        key(StateEventType::RoomPowerLevels, ""),
        vec![ids[2].clone(), ids[0].clone()],
    )]);
    let subgraph: HashSet<OwnedEventId> =
        conflicted_state_subgraph(&conflicted, &room.fetch_event())
            .into_iter()
            .collect();
    assert_eq!(
        subgraph,
        ids.iter().cloned().collect(),
        "the middle power levels lie on the path"
    );
}
