use ruma::signatures::{Verified, verify_event};
use ruma::{CanonicalJsonValue, EventId, RoomVersionId};
use serde_json::json;

use super::*;
use crate::room::testing::{TestRoom, keypair, message, public_keys, room_name, server, ts, user};
use crate::room::{SUPPORTED, check_format, room_create_event_id, rules_for};

#[test]
fn a_new_room_is_hashed_signed_and_parsable_in_every_version() {
    for version in SUPPORTED {
        let room = TestRoom::new(version.clone(), "alice");
        for (depth, pdu) in (1..).zip(&room.creation) {
            let verified = verify_event(&public_keys(), &pdu.json, &room.rules).unwrap();
            assert_eq!(verified, Verified::All, "{version} {}", pdu.kind);
            assert!(pdu.event_id.as_str().starts_with('$'));
            assert_eq!(pdu.event_id.as_str().len(), 44, "{}", pdu.event_id);
            assert!(
                !pdu.json.contains_key("event_id"),
                "v3+ formats carry no event_id"
            );
            assert_eq!(event_id_for(&room.rules, &pdu.json).unwrap(), pdu.event_id);
            check_format(&room.rules, &pdu.json).unwrap();
            assert_eq!(pdu.depth, depth);

            let parsed =
                Pdu::from_json(pdu.event_id.clone(), &room.room_id, pdu.json.clone()).unwrap();
            assert_eq!(parsed.kind, pdu.kind);
            assert_eq!(parsed.sender, pdu.sender);
            assert_eq!(parsed.state_key, pdu.state_key);
            assert_eq!(parsed.prev_events, pdu.prev_events);
            assert_eq!(parsed.auth_events, pdu.auth_events);
            assert_eq!(parsed.origin_server_ts, pdu.origin_server_ts);
            assert_eq!(parsed.content.get(), pdu.content.get());
        }
        let ids: Vec<_> = room
            .creation
            .iter()
            .map(|pdu| pdu.event_id.clone())
            .collect();
        for pair in ids.windows(2).zip(&room.creation[1..]) {
            assert_eq!(
                pair.1.prev_events,
                vec![pair.0[0].clone()],
                "each event follows the previous one"
            );
        }
    }
}

#[test]
fn a_v12_room_id_is_derived_from_its_create_event() {
    let room = TestRoom::new(RoomVersionId::V12, "alice");
    let create = &room.creation[0];
    assert!(!create.json.contains_key("room_id"));
    assert_eq!(
        room.room_id.as_str(),
        format!("!{}", &create.event_id.as_str()[1..])
    );
    assert_eq!(room.room_id.server_name(), None);
    assert_eq!(
        room_create_event_id(&room.room_id).unwrap(),
        create.event_id
    );
    for pdu in &room.creation[1..] {
        assert_eq!(
            pdu.json["room_id"],
            CanonicalJsonValue::String(room.room_id.to_string())
        );
        assert!(
            !pdu.auth_events.contains(&create.event_id),
            "v12 never cites the create event"
        );
    }

    for version in [RoomVersionId::V10, RoomVersionId::V11] {
        let room = TestRoom::new(version, "alice");
        assert_eq!(room.room_id.as_str(), "!room:example.org");
        assert!(
            room.creation[1..]
                .iter()
                .all(|pdu| pdu.auth_events.contains(&room.creation[0].event_id))
        );
    }
}

#[test]
fn redacts_is_top_level_up_to_v10_and_in_content_from_v11() {
    for version in SUPPORTED {
        let mut room = TestRoom::new(version.clone(), "alice");
        let target = room.send("alice", message("oops")).event_id.clone();
        let redaction = room.send(
            "alice",
            PduTemplate::redaction(target.clone(), json!({ "reason": "typo" })),
        );
        let top_level = redaction
            .json
            .get("redacts")
            .and_then(CanonicalJsonValue::as_str);
        let content: serde_json::Value = serde_json::from_str(redaction.content.get()).unwrap();
        if *version == RoomVersionId::V10 {
            assert_eq!(top_level, Some(target.as_str()));
            assert_eq!(content.get("redacts"), None);
        } else {
            assert_eq!(top_level, None);
            assert_eq!(content["redacts"], target.as_str());
        }
        assert_eq!(redaction.redacts.as_ref(), Some(&target));
        let parsed = Pdu::from_json(
            redaction.event_id.clone(),
            &room.room_id,
            redaction.json.clone(),
        )
        .unwrap();
        assert_eq!(parsed.redacts.as_ref(), Some(&target));
        assert_eq!(redaction.to_client_event()["redacts"], target.as_str());
    }
}

#[test]
fn an_event_over_64_kib_is_refused() {
    let room = TestRoom::new(RoomVersionId::V11, "alice");
    let big = room.build_on(&room.main, "alice", message(&"a".repeat(60_000)), 5_000);
    assert!(big.canonical_json().unwrap().len() > 60_000);

    let too_big = build_pdu(
        &room.rules,
        Some(&room.room_id),
        message(&"a".repeat(70_000)),
        &user("alice"),
        room.main.prev.clone(),
        vec![],
        5,
        ts(5_000),
        server(),
        &keypair(),
    );
    assert!(matches!(too_big, Err(PduError::TooLarge)), "{too_big:?}");
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    let rules = rules_for(&RoomVersionId::V12).unwrap();
    let room_id = RoomId::parse("!room:example.org").unwrap();
    let build =
        |room_id: Option<&RoomId>, template: PduTemplate, prev_events: Vec<OwnedEventId>| {
            build_pdu(
                &rules,
                room_id,
                template,
                &user("alice"),
                prev_events,
                vec![],
                2,
                ts(1),
                server(),
                &keypair(),
            )
        };
    let malformed = |result: Result<Pdu, PduError>| match result {
        Err(PduError::Malformed(reason)) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    };

    let not_object = PduTemplate::message(TimelineEventType::RoomMessage, json!(["body"]));
    assert!(malformed(build(Some(&room_id), not_object, vec![])).contains("object"));

    let long_key = PduTemplate::state(
        TimelineEventType::from("m.custom"),
        "k".repeat(256),
        json!({}),
    );
    assert!(malformed(build(Some(&room_id), long_key, vec![])).contains("state_key"));

    let float = PduTemplate::message(TimelineEventType::RoomMessage, json!({ "n": 1.5 }));
    assert!(malformed(build(Some(&room_id), float, vec![])).contains("content"));

    let prev: Vec<OwnedEventId> = (0..21)
        .map(|i| EventId::parse(format!("$event{i}")).unwrap())
        .collect();
    assert!(malformed(build(Some(&room_id), room_name("x"), prev)).contains("prev_events"));

    let create = PduTemplate::state(
        TimelineEventType::RoomCreate,
        "",
        json!({ "room_version": "12" }),
    );
    assert!(malformed(build(Some(&room_id), create, vec![])).contains("derived"));
    assert!(malformed(build(None, message("hi"), vec![])).contains("room_id"));

    let stray_redacts = PduTemplate {
        redacts: Some(EventId::parse("$x").unwrap()),
        ..message("hi")
    };
    assert!(malformed(build(Some(&room_id), stray_redacts, vec![])).contains("redact"));
}

#[test]
fn a_pdu_of_another_room_does_not_parse() {
    let room = TestRoom::new(RoomVersionId::V11, "alice");
    let join = &room.creation[1];
    let elsewhere = RoomId::parse("!elsewhere:example.org").unwrap();
    let err = Pdu::from_json(join.event_id.clone(), &elsewhere, join.json.clone()).unwrap_err();
    assert!(err.to_string().contains("belongs to room"), "{err}");

    let v12 = TestRoom::new(RoomVersionId::V12, "alice");
    let create = &v12.creation[0];
    let err = Pdu::from_json(create.event_id.clone(), &elsewhere, create.json.clone()).unwrap_err();
    assert!(err.to_string().contains("not derived"), "{err}");
}

#[test]
fn the_client_format_carries_what_clients_read() {
    let mut room = TestRoom::new(RoomVersionId::V11, "alice");
    let mut template = message("hello");
    template.unsigned = Some(json!({ "note": "kept" }).as_object().unwrap().clone());
    let pdu = room.send("alice", template);
    let event = pdu.to_client_event();
    assert_eq!(event["event_id"], pdu.event_id.as_str());
    assert_eq!(event["room_id"], room.room_id.as_str());
    assert_eq!(event["sender"], "@alice:example.org");
    assert_eq!(event["type"], "m.room.message");
    assert_eq!(event["content"]["body"], "hello");
    assert_eq!(
        event["origin_server_ts"],
        u64::from(pdu.origin_server_ts.get())
    );
    assert_eq!(event["unsigned"]["note"], "kept");
    assert!(!event.contains_key("state_key"));
    assert!(!pdu.is_state());

    let name = room.send("alice", room_name("Garden"));
    let event = name.to_client_event();
    assert_eq!(event["state_key"], "");
    assert!(name.is_state());
}
