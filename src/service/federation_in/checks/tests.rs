//! Each check on a PDU built and signed here by a made-up remote server.

use ruma::canonical_json::CanonicalJsonValue;
use ruma::events::TimelineEventType;
use ruma::serde::Base64;
use ruma::{MilliSecondsSinceUnixEpoch, UInt, UserId};
use serde_json::json;

use super::*;
use crate::federation::signing_key::SigningKey;
use crate::room::PduTemplate;

const REMOTE: &str = "remote.test";

fn key(seed: u8) -> SigningKey {
    SigningKey::new("k1", ed25519_dalek::SigningKey::from_bytes(&[seed; 32])).unwrap()
}

fn rules() -> RoomVersionRules {
    RoomVersionId::V11.rules().unwrap()
}

fn room_id() -> OwnedRoomId {
    RoomId::parse("!room:local.test").unwrap()
}

/// A message from `@bob:remote.test`, signed by remote.test with `signer`.
fn signed_message(signer: &SigningKey) -> CanonicalJsonObject {
    let template = PduTemplate::message(
        TimelineEventType::RoomMessage,
        json!({"msgtype": "m.text", "body": "hello"}),
    );
    let sender = UserId::parse(format!("@bob:{REMOTE}")).unwrap();
    let prev = ruma::EventId::parse("$prev").unwrap();
    let pdu = room::build_pdu(
        &rules(),
        Some(&room_id()),
        template,
        &sender,
        vec![prev.clone()],
        vec![prev],
        2,
        MilliSecondsSinceUnixEpoch(UInt::new(5_000).unwrap()),
        <&ServerName>::try_from(REMOTE).unwrap(),
        signer.keypair(),
    )
    .unwrap();
    pdu.json
}

/// The public key map for `signer` as remote.test's key.
fn keys_of(signer: &SigningKey) -> PublicKeyMap {
    let public = Base64::parse(signer.public_key_base64()).unwrap();
    PublicKeyMap::from([(
        REMOTE.to_owned(),
        [(signer.key_id(), public)].into_iter().collect(),
    )])
}

fn check(json: CanonicalJsonObject, keys: &PublicKeyMap) -> Result<CheckedPdu, String> {
    let event_id = room::event_id_for(&rules(), &json).unwrap();
    verify_pdu(&rules(), event_id, &room_id(), json, keys)
}

#[test]
fn the_room_and_the_keys_to_fetch_are_read_from_the_pdu() {
    let json = signed_message(&key(1));
    assert_eq!(room_id_of(&json).unwrap(), room_id());
    let keys = keys_to_fetch(&rules(), &json).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0.as_str(), REMOTE);
    assert_eq!(keys[0].1.as_str(), "ed25519:k1");

    let mut no_room = json.clone();
    no_room.remove("room_id");
    assert!(room_id_of(&no_room).is_err());
}

#[test]
fn a_pdu_not_signed_by_the_senders_server_is_refused() {
    let mut json = signed_message(&key(1));
    let mut signatures = CanonicalJsonObject::new();
    signatures.insert(
        "other.test".into(),
        json["signatures"].as_object().unwrap()[REMOTE].clone(),
    );
    json.insert("signatures".into(), CanonicalJsonValue::Object(signatures));
    let error = keys_to_fetch(&rules(), &json).unwrap_err();
    assert!(error.contains("not signed by remote.test"), "{error}");
}

#[test]
fn a_correctly_signed_pdu_passes_whole_without_the_senders_unsigned() {
    let signer = key(1);
    let mut json = signed_message(&signer);
    let mut unsigned = CanonicalJsonObject::new();
    unsigned.insert("redacted_because".into(), CanonicalJsonValue::Bool(true));
    json.insert("unsigned".into(), CanonicalJsonValue::Object(unsigned));
    let checked = check(json, &keys_of(&signer)).unwrap();
    assert!(!checked.redacted);
    assert!(checked.pdu.content.get().contains("hello"));
    assert!(!checked.pdu.json.contains_key("unsigned"));
}

#[test]
fn a_signature_by_another_key_or_over_other_fields_fails() {
    let signer = key(1);
    let error = check(signed_message(&signer), &keys_of(&key(2))).unwrap_err();
    assert!(error.contains("signature check failed"), "{error}");

    let mut moved = signed_message(&signer);
    moved.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(6_000u32.into()),
    );
    assert!(check(moved, &keys_of(&signer)).is_err());

    // Without any key of the sender's server the check cannot pass either.
    let error = check(signed_message(&signer), &PublicKeyMap::new()).unwrap_err();
    assert!(error.contains("signature check failed"), "{error}");
}

#[test]
fn a_tampered_content_keeps_the_redacted_form() {
    let signer = key(1);
    let mut json = signed_message(&signer);
    let mut content = CanonicalJsonObject::new();
    content.insert(
        "msgtype".into(),
        CanonicalJsonValue::String("m.text".into()),
    );
    content.insert("body".into(), CanonicalJsonValue::String("tampered".into()));
    json.insert("content".into(), CanonicalJsonValue::Object(content));
    // The reference hash covers the redacted form, so the event id stays the same.
    assert_eq!(
        room::event_id_for(&rules(), &json).unwrap(),
        room::event_id_for(&rules(), &signed_message(&signer)).unwrap()
    );
    let checked = check(json, &keys_of(&signer)).unwrap();
    assert!(checked.redacted);
    assert_eq!(checked.pdu.content.get(), "{}");
}

#[test]
fn the_fallback_event_id_is_the_version_11_reference_hash() {
    let json = signed_message(&key(1));
    assert_eq!(
        fallback_event_id(&json),
        Some(room::event_id_for(&rules(), &json).unwrap())
    );
}

#[test]
fn the_server_acl_allows_and_denies_by_pattern() {
    let acl = |content: serde_json::Value| serde_json::value::to_raw_value(&content).unwrap();
    let server = |name: &str| <&ServerName>::try_from(name).unwrap().to_owned();
    let content = acl(json!({"allow": ["*"], "deny": ["*.evil.test"], "allow_ip_literals": false}));
    assert!(server_allowed(&content, &server("remote.test")));
    assert!(!server_allowed(&content, &server("a.evil.test")));
    assert!(!server_allowed(&content, &server("1.2.3.4")));
    let only = acl(json!({"allow": ["good.test"]}));
    assert!(server_allowed(&only, &server("good.test")));
    assert!(!server_allowed(&only, &server("remote.test")));
    assert!(server_allowed(
        &acl(json!({"allow": 3})),
        &server("remote.test")
    ));
}
