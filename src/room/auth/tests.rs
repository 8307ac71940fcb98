use std::collections::HashSet;

use ruma::RoomVersionId;
use serde_json::json;
use serde_json::value::to_raw_value;

use super::*;
use crate::room::testing::{
    TestRoom, default_power_levels, keypair, member, message, power_levels, room_name, server, ts,
    user,
};
use crate::room::{PduTemplate, SUPPORTED, build_pdu, rules_for};

fn pairs(expected: &[(StateEventType, String)]) -> HashSet<(StateEventType, String)> {
    expected.iter().cloned().collect()
}

#[test]
fn auth_types_name_power_levels_membership_and_the_create_event_up_to_v11() {
    let alice = user("alice");
    let bob = user("bob");
    for version in SUPPORTED {
        let rules = rules_for(version).unwrap();
        let create_pair = (StateEventType::RoomCreate, String::new());
        let uses_create = *version != RoomVersionId::V12;

        let content = to_raw_value(&json!({ "msgtype": "m.text", "body": "hi" })).unwrap();
        let found = auth_types_for(
            &rules,
            &TimelineEventType::RoomMessage,
            &alice,
            None,
            &content,
        )
        .unwrap();
        let mut expected = pairs(&[
            (StateEventType::RoomPowerLevels, String::new()),
            (StateEventType::RoomMember, alice.to_string()),
        ]);
        if uses_create {
            expected.insert(create_pair.clone());
        }
        assert_eq!(
            found.into_iter().collect::<HashSet<_>>(),
            expected,
            "{version}"
        );

        let join = to_raw_value(&json!({ "membership": "join" })).unwrap();
        let found = auth_types_for(
            &rules,
            &TimelineEventType::RoomMember,
            &bob,
            Some(bob.as_str()),
            &join,
        )
        .unwrap();
        let mut expected = pairs(&[
            (StateEventType::RoomPowerLevels, String::new()),
            (StateEventType::RoomMember, bob.to_string()),
            (StateEventType::RoomJoinRules, String::new()),
        ]);
        if uses_create {
            expected.insert(create_pair);
        }
        assert_eq!(
            found.into_iter().collect::<HashSet<_>>(),
            expected,
            "{version}"
        );

        let create = to_raw_value(&json!({ "room_version": version.as_str() })).unwrap();
        let found = auth_types_for(
            &rules,
            &TimelineEventType::RoomCreate,
            &alice,
            Some(""),
            &create,
        )
        .unwrap();
        assert!(found.is_empty());
    }
}

#[test]
fn the_creator_may_speak_and_a_non_member_may_not() {
    for version in SUPPORTED {
        let mut room = TestRoom::new(version.clone(), "alice");
        room.send("alice", message("hello"));
        let err = room.try_send("mallory", message("let me in")).unwrap_err();
        assert!(
            err.to_string().contains("membership is not `join`"),
            "{version}: {err}"
        );
    }
}

#[test]
fn a_member_without_power_cannot_rename_the_room() {
    for version in SUPPORTED {
        let mut room = TestRoom::new(version.clone(), "alice");
        room.invite_and_join("alice", "bob");
        room.send("bob", message("hi all"));
        let err = room.try_send("bob", room_name("Bob's room")).unwrap_err();
        let reason = err.to_string();
        assert!(
            reason.contains("not have enough power") && reason.contains("m.room.name"),
            "{version}: {reason}"
        );
        room.send("alice", room_name("Alice's room"));
    }
}

#[test]
fn nobody_joins_an_invite_only_room_uninvited() {
    for version in SUPPORTED {
        let mut room = TestRoom::new(version.clone(), "alice");
        let err = room.try_send("carol", member("carol", "join")).unwrap_err();
        assert!(err.to_string().contains("not `public`"), "{version}: {err}");
        room.invite_and_join("alice", "carol");
    }
}

#[test]
fn v12_creators_hold_infinite_power_and_are_never_listed() {
    let mut room = TestRoom::new(RoomVersionId::V12, "alice");
    room.invite_and_join("alice", "bob");
    room.send(
        "alice",
        power_levels(default_power_levels(json!({ user("bob").as_str(): 100 }))),
    );

    let err = room.try_send("bob", member("alice", "ban")).unwrap_err();
    assert!(
        err.to_string().contains("not have enough power to ban"),
        "{err}"
    );

    let listed = power_levels(default_power_levels(json!({ user("alice").as_str(): 100 })));
    let err = room.try_send("alice", listed).unwrap_err();
    assert!(err.to_string().contains("creator"), "{err}");

    room.send("alice", member("bob", "ban"));
}

#[test]
fn the_auth_events_themselves_are_checked() {
    for version in SUPPORTED {
        let mut room = TestRoom::new(version.clone(), "alice");
        let pdu = room.send("alice", message("hello"));
        check_auth_by_auth_events(&room.rules, &pdu, room.fetch_event()).unwrap();

        // Citing the join rules for a message is not what the selection algorithm asks for.
        let mut cited: Vec<_> = pdu.auth_events.clone();
        cited.push(room.main.state[&(StateEventType::RoomJoinRules, String::new())].clone());
        let extra = build_message_citing(&room, cited);
        let err = check_auth_by_auth_events(&room.rules, &extra, room.fetch_event()).unwrap_err();
        assert!(
            err.to_string().contains("unexpected auth event"),
            "{version}: {err}"
        );

        // An event citing a rejected event is rejected too.
        let rejected_power = {
            let id = &room.main.state[&(StateEventType::RoomPowerLevels, String::new())];
            let mut pl = (*room.events[id]).clone();
            pl.rejected = true;
            Arc::new(pl)
        };
        let fetch = |id: &EventId| {
            if *id == rejected_power.event_id {
                Some(rejected_power.clone())
            } else {
                room.events.get(id).cloned()
            }
        };
        let err = check_auth_by_auth_events(&room.rules, &pdu, fetch).unwrap_err();
        assert!(
            err.to_string().contains("rejected auth event"),
            "{version}: {err}"
        );
    }
}

#[test]
fn a_v12_event_must_not_cite_the_create_event() {
    let mut room = TestRoom::new(RoomVersionId::V12, "alice");
    let pdu = room.send("alice", message("hello"));
    let mut cited = pdu.auth_events.clone();
    cited.push(room.creation[0].event_id.clone());
    let citing_create = build_message_citing(&room, cited);
    let err = check_auth(
        &room.rules,
        &citing_create,
        room.fetch_event(),
        room.fetch_state(&room.main.state),
    )
    .unwrap_err();
    // Ruma notices first that the create event carries no room id of its own.
    assert!(
        err.to_string().contains(room.creation[0].event_id.as_str()),
        "{err}"
    );
    let err = crate::room::check_format(&room.rules, &citing_create.json).unwrap_err();
    assert!(err.to_string().contains("m.room.create"), "{err}");
}

#[test]
fn create_events_are_checked_on_their_own() {
    for version in SUPPORTED {
        let room = TestRoom::new(version.clone(), "alice");
        let create = &room.creation[0];
        check_auth(&room.rules, create, room.fetch_event(), |_, _| None).unwrap();
        check_auth_by_auth_events(&room.rules, create, room.fetch_event()).unwrap();
    }

    // Up to v10 the create event must name its creator.
    let rules = rules_for(&RoomVersionId::V10).unwrap();
    let room_id = ruma::RoomId::parse("!nameless:example.org").unwrap();
    let template = PduTemplate::state(
        TimelineEventType::RoomCreate,
        "",
        json!({ "room_version": "10" }),
    );
    let create = build_pdu(
        &rules,
        Some(&room_id),
        template,
        &user("alice"),
        vec![],
        vec![],
        1,
        ts(1),
        server(),
        &keypair(),
    )
    .unwrap();
    let err = check_auth(&rules, &create, |_| None, |_, _| None).unwrap_err();
    assert!(err.to_string().contains("creator"), "{err}");
}

/// A message from alice on the main line citing exactly `auth_events`.
fn build_message_citing(room: &TestRoom, auth_events: Vec<ruma::OwnedEventId>) -> Pdu {
    build_pdu(
        &room.rules,
        Some(&room.room_id),
        message("cited"),
        &user("alice"),
        room.main.prev.clone(),
        auth_events,
        room.main.depth + 1,
        ts(99_000),
        server(),
        &keypair(),
    )
    .unwrap()
}
