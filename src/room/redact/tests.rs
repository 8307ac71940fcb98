use ruma::events::StateEventType;
use ruma::signatures::{Verified, verify_event};
use ruma::{CanonicalJsonValue, RoomVersionId};
use serde_json::{Value, json};

use super::*;
use crate::room::testing::{TestRoom, message, public_keys, user};
use crate::room::{PduTemplate, SUPPORTED, event_id_for};

fn content_of(pdu: &Pdu) -> Value {
    serde_json::from_str(pdu.content.get()).unwrap()
}

fn state_pdu(room: &TestRoom, kind: StateEventType, state_key: &str) -> Pdu {
    (*room.events[&room.main.state[&(kind, state_key.to_owned())]]).clone()
}

#[test]
fn a_redacted_message_loses_its_body_but_keeps_its_id_and_signatures() {
    for version in SUPPORTED {
        let mut room = TestRoom::new(version.clone(), "alice");
        let secret = room.send("alice", message("my password is hunter2"));
        let redaction = room.send(
            "alice",
            PduTemplate::redaction(secret.event_id.clone(), json!({})),
        );
        let because = Value::Object(redaction.to_client_event());

        let redacted = redact_pdu(&secret, &room.rules, Some(because)).unwrap();
        assert_eq!(content_of(&redacted), json!({}), "{version}");
        assert!(!redacted.canonical_json().unwrap().contains("hunter2"));
        assert_eq!(redacted.event_id, secret.event_id);
        assert_eq!(
            event_id_for(&room.rules, &redacted.json).unwrap(),
            secret.event_id
        );
        assert_eq!(
            verify_event(&public_keys(), &redacted.json, &room.rules).unwrap(),
            Verified::Signatures
        );

        let client = redacted.to_client_event();
        assert_eq!(
            client["unsigned"]["redacted_because"]["event_id"],
            redaction.event_id.as_str()
        );
        assert_eq!(client["type"], "m.room.message");
    }
}

#[test]
fn v10_keeps_membership_and_only_the_creator_of_the_create_event() {
    let room = TestRoom::new(RoomVersionId::V10, "alice");
    let mut join = state_pdu(&room, StateEventType::RoomMember, user("alice").as_str());
    let CanonicalJsonValue::Object(content) = join.json.get_mut("content").unwrap() else {
        unreachable!()
    };
    content.insert(
        "displayname".into(),
        CanonicalJsonValue::String("Alice".into()),
    );
    // `origin` was a top-level key of older formats; v10's algorithm still keeps it.
    join.json.insert(
        "origin".into(),
        CanonicalJsonValue::String("example.org".into()),
    );

    let redacted = redact_pdu(&join, &room.rules, None).unwrap();
    assert_eq!(content_of(&redacted), json!({ "membership": "join" }));
    assert!(redacted.json.contains_key("origin"));

    let create = redact_pdu(&room.creation[0], &room.rules, None).unwrap();
    assert_eq!(
        content_of(&create),
        json!({ "creator": "@alice:example.org" })
    );

    let power = redact_pdu(
        &state_pdu(&room, StateEventType::RoomPowerLevels, ""),
        &room.rules,
        None,
    )
    .unwrap();
    let power = content_of(&power);
    assert_eq!(power["ban"], 50);
    assert_eq!(
        power.get("invite"),
        None,
        "v10 drops invite from power levels"
    );
}

#[test]
fn v11_keeps_the_whole_create_content_and_the_redacts_of_a_redaction() {
    let mut room = TestRoom::new(RoomVersionId::V11, "alice");
    let create = &room.creation[0];
    let redacted_create = redact_pdu(create, &room.rules, None).unwrap();
    assert_eq!(content_of(&redacted_create), content_of(create));

    let power = redact_pdu(
        &state_pdu(&room, StateEventType::RoomPowerLevels, ""),
        &room.rules,
        None,
    )
    .unwrap();
    assert_eq!(
        content_of(&power)["invite"],
        0,
        "v11 keeps invite in power levels"
    );

    let mut join = state_pdu(&room, StateEventType::RoomMember, user("alice").as_str());
    join.json.insert(
        "origin".into(),
        CanonicalJsonValue::String("example.org".into()),
    );
    assert!(
        !redact_pdu(&join, &room.rules, None)
            .unwrap()
            .json
            .contains_key("origin")
    );

    let target = room.send("alice", message("oops")).event_id.clone();
    let redaction = room.send(
        "alice",
        PduTemplate::redaction(target.clone(), json!({ "reason": "typo" })),
    );
    let redacted = redact_pdu(&redaction, &room.rules, None).unwrap();
    assert_eq!(content_of(&redacted), json!({ "redacts": target.as_str() }));
    assert_eq!(redacted.redacts.as_ref(), Some(&target));
}

#[test]
fn a_v10_redaction_loses_its_reason_and_its_target() {
    let mut room = TestRoom::new(RoomVersionId::V10, "alice");
    let target = room.send("alice", message("oops")).event_id.clone();
    let redaction = room.send(
        "alice",
        PduTemplate::redaction(target, json!({ "reason": "typo" })),
    );
    let redacted = redact_pdu(&redaction, &room.rules, None).unwrap();
    assert_eq!(content_of(&redacted), json!({}));
    assert_eq!(redacted.redacts, None);
}

#[test]
fn redacted_because_must_be_an_object() {
    let room = TestRoom::new(RoomVersionId::V11, "alice");
    let err = redact_pdu(&room.creation[1], &room.rules, Some(json!("because"))).unwrap_err();
    assert!(matches!(err, PduError::Malformed(_)), "{err}");
}
