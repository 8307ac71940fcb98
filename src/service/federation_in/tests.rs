//! Transactions from a made-up remote server, `remote.test`, whose key is stored as if fetched:
//! PDUs are built and signed here by its key, on the real room of a local user, and go through
//! `receive_transaction` (or, for the remote user's join, which arrives by `send_join`, straight
//! through `ingest_pdu`).

use std::sync::Arc;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomVersionId, UserId};
use serde_json::{Value as JsonValue, json};

use super::*;
use crate::federation::signing_key::SigningKey;
use crate::room::{Pdu, PduTemplate};
use crate::service::UserSession;
use crate::service::account_data::tests::services_with;
use crate::service::rooms::CreateRoom;
use crate::storage::server_keys::{NewKey, StoredResponse};

const REMOTE: &str = "remote.test";

struct Fixture {
    _dir: tempfile::TempDir,
    services: Arc<Services>,
    alice: UserSession,
    room: OwnedRoomId,
    rules: RoomVersionRules,
    key: SigningKey,
}

fn remote() -> &'static ServerName {
    <&ServerName>::try_from(REMOTE).unwrap()
}

fn bob() -> ruma::OwnedUserId {
    UserId::parse(format!("@bob:{REMOTE}")).unwrap()
}

fn message(body: &str) -> PduTemplate {
    PduTemplate::message(
        TimelineEventType::RoomMessage,
        json!({"msgtype": "m.text", "body": body}),
    )
}

fn member(user: &str, membership: &str, extra: JsonValue) -> PduTemplate {
    let mut content = json!({ "membership": membership });
    if let (Some(content), JsonValue::Object(extra)) = (content.as_object_mut(), extra) {
        content.extend(extra);
    }
    PduTemplate::state(TimelineEventType::RoomMember, user, content)
}

/// Alice's public room (version `version`) on `localhost`, with `@bob:remote.test` joined.
async fn fixture(version: RoomVersionId) -> Fixture {
    let alice = UserSession {
        user_id: "@alice:localhost".try_into().unwrap(),
        device_id: "DEVICE".into(),
        is_admin: false,
        without_device: false,
    };
    let (dir, services) = services_with(&[&alice.user_id]).await;
    let services = Arc::new(services);
    let key = SigningKey::new("remote1", ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap();
    let stored = NewKey {
        key_id: key.key_id(),
        public_key: key.public_key_base64(),
        valid_until_ts: storage::now_ms() + 3_600_000,
        expired_ts: None,
    };
    services
        .db
        .write("store_remote_key", move |c| {
            let response = StoredResponse {
                response: "{}".into(),
                valid_until_ts: stored.valid_until_ts,
                fetched_ts: storage::now_ms(),
            };
            storage::server_keys::store_server_keys_txn(c, REMOTE, &[stored], &response)
        })
        .await
        .unwrap();
    let create = CreateRoom {
        preset: Some("public_chat".into()),
        room_version: Some(version.clone()),
        ..CreateRoom::default()
    };
    let room = services.create_room(&alice, create).await.unwrap();
    let fixture = Fixture {
        _dir: dir,
        services,
        alice,
        room,
        rules: room::rules_for(&version).unwrap(),
        key,
    };
    let join = fixture
        .build(&bob(), member(bob().as_str(), "join", json!({})), None)
        .await;
    assert_eq!(
        fixture
            .services
            .ingest_pdu(&fixture.rules, Arc::new(join), &mut Default::default())
            .await
            .unwrap(),
        Ingested::Accepted
    );
    fixture
}

impl Fixture {
    /// A PDU from `sender`, signed by remote.test, on `prev` (default: the room's forward
    /// extremities), citing the room's current state as its auth events.
    async fn build(
        &self,
        sender: &UserId,
        template: PduTemplate,
        prev: Option<Vec<OwnedEventId>>,
    ) -> Pdu {
        let content = serde_json::value::to_raw_value(&template.content).unwrap();
        let keys = room::auth_types_for(
            &self.rules,
            &template.kind,
            sender,
            template.state_key.as_deref(),
            &content,
        )
        .unwrap();
        let room = self.room.to_string();
        let skip_create = self.rules.authorization.room_create_event_id_as_room_id;
        let (extremities, depth, auth) = self
            .services
            .db
            .read(move |c| {
                let extremities: Vec<String> = storage::events::forward_extremities(c, &room)?
                    .into_iter()
                    .map(|row| row.event_id)
                    .collect();
                let depth = c.query_row(
                    "SELECT MAX(depth) FROM events WHERE room_id = ?1",
                    [&room],
                    |r| r.get::<_, i64>(0),
                )?;
                let mut auth = Vec::new();
                for (kind, key) in keys {
                    if skip_create && kind == StateEventType::RoomCreate {
                        continue;
                    }
                    if let Some(nid) =
                        storage::state::current_state_event(c, &room, &kind.to_string(), &key)?
                        && let Some(row) = storage::events::get_event_by_nid(c, nid)?
                    {
                        auth.push(row.event_id);
                    }
                }
                Ok((extremities, depth, auth))
            })
            .await
            .unwrap();
        let ids = |list: Vec<String>| -> Vec<OwnedEventId> {
            list.iter().map(|id| EventId::parse(id).unwrap()).collect()
        };
        room::build_pdu(
            &self.rules,
            Some(&self.room),
            template,
            sender,
            prev.unwrap_or_else(|| ids(extremities)),
            ids(auth),
            depth as u64 + 1,
            MilliSecondsSinceUnixEpoch::now(),
            remote(),
            self.key.keypair(),
        )
        .unwrap()
    }

    async fn send(&self, txn: &str, pdus: &[&Pdu], edus: &[JsonValue]) -> PduResults {
        let pdus: Vec<Box<RawJsonValue>> = pdus
            .iter()
            .map(|pdu| serde_json::value::to_raw_value(&pdu.json).unwrap())
            .collect();
        let edus: Vec<Box<RawJsonValue>> = edus
            .iter()
            .map(|edu| serde_json::value::to_raw_value(edu).unwrap())
            .collect();
        self.services
            .receive_transaction(remote(), txn, &pdus, &edus)
            .await
            .unwrap()
    }

    async fn extremities(&self) -> Vec<String> {
        let room = self.room.to_string();
        self.services
            .db
            .read(move |c| storage::events::forward_extremities(c, &room))
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.event_id)
            .collect()
    }

    /// The room's timeline as clients read it, newest first.
    async fn timeline(&self) -> Vec<String> {
        let room = self.room.to_string();
        self.services
            .db
            .read(move |c| {
                storage::events::page_events(
                    c,
                    &storage::events::Page {
                        room_id: &room,
                        from: i64::MAX,
                        to: None,
                        backwards: true,
                        limit: 100,
                        types: &[],
                        not_types: &[],
                        senders: &[],
                        not_senders: &[],
                    },
                )
            })
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.event_id)
            .collect()
    }

    async fn stored(&self, event_id: &EventId) -> Option<received::StoredEvent> {
        let ids = vec![event_id.to_string()];
        self.services
            .db
            .read(move |c| received::stored_events(c, &ids))
            .await
            .unwrap()
            .into_iter()
            .next()
    }

    async fn current_state(&self, kind: &str, state_key: &str) -> Option<String> {
        let (room, kind, key) = (self.room.to_string(), kind.to_owned(), state_key.to_owned());
        self.services
            .db
            .read(move |c| {
                let nid = storage::state::current_state_event(c, &room, &kind, &key)?;
                Ok(nid
                    .map(|n| storage::events::get_event_by_nid(c, n))
                    .transpose()?
                    .flatten()
                    .map(|row| row.event_id))
            })
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_message_from_a_joined_remote_user_joins_the_timeline_and_wakes_the_room() {
    for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
        let f = fixture(version.clone()).await;
        assert_eq!(
            f.services
                .membership_of(&f.room, &bob())
                .await
                .unwrap()
                .as_deref(),
            Some("join")
        );
        let woken = f.services.notifier.subscribe_room(&f.room);
        let pdu = f.build(&bob(), message("hello"), None).await;
        let results = f.send("t1", &[&pdu], &[]).await;
        assert_eq!(results.get(&pdu.event_id), Some(&Ok(())), "{version}");
        assert!(woken.has_changed().unwrap());
        assert_eq!(f.extremities().await, [pdu.event_id.to_string()]);
        assert_eq!(f.timeline().await[0], pdu.event_id.as_str());
        // Brought again by another path meanwhile: the same outcome, nothing written twice.
        let again = f
            .services
            .ingest_pdu(&f.rules, Arc::new(pdu.clone()), &mut Default::default())
            .await
            .unwrap();
        assert_eq!(again, Ingested::Accepted);

        // A local event builds on it.
        let content = json!({"msgtype": "m.text", "body": "hi bob"});
        let reply = f
            .services
            .send_message(&f.alice, &f.room, "m.room.message", "r1", content)
            .await
            .unwrap();
        assert_eq!(f.extremities().await, [reply.to_string()]);
    }
}

#[tokio::test]
async fn a_transaction_sent_again_gets_the_first_answer_without_processing() {
    let f = fixture(RoomVersionId::V11).await;
    let first = f.build(&bob(), message("one"), None).await;
    let results = f.send("again", &[&first], &[]).await;
    assert_eq!(results.len(), 1);

    let second = f.build(&bob(), message("two"), None).await;
    let repeated = f.send("again", &[&second], &[]).await;
    assert_eq!(repeated, results);
    assert!(f.stored(&second.event_id).await.is_none(), "not processed");
    // The same id from another origin is another transaction.
    let pdus = vec![serde_json::value::to_raw_value(&second.json).unwrap()];
    let other: &ServerName = "other.test".try_into().unwrap();
    let answer = f
        .services
        .receive_transaction(other, "again", &pdus, &[])
        .await
        .unwrap();
    assert!(
        answer[&second.event_id].is_err(),
        "other.test is not in the room"
    );
}

#[tokio::test]
async fn limits_and_unknown_rooms_and_outsiders() {
    let f = fixture(RoomVersionId::V11).await;
    let pdu = f.build(&bob(), message("x"), None).await;
    let raw = serde_json::value::to_raw_value(&pdu.json).unwrap();
    let too_many = vec![raw.clone(); MAX_PDUS + 1];
    let error = f
        .services
        .receive_transaction(remote(), "big", &too_many, &[])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BadJson(_)), "{error}");

    // A room this server does not know: an error for the PDU, keyed by its id.
    let mut elsewhere = pdu.json.clone();
    elsewhere.insert(
        "room_id".into(),
        ruma::CanonicalJsonValue::String("!unknown:remote.test".into()),
    );
    let pdus = [serde_json::value::to_raw_value(&elsewhere).unwrap()];
    let results = f
        .services
        .receive_transaction(remote(), "unknown", &pdus, &[])
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    let error = results.values().next().unwrap().as_ref().unwrap_err();
    assert!(error.contains("not known here"), "{error}");

    // Not JSON objects at all: dropped without an answer.
    let junk = [serde_json::value::to_raw_value(&json!([1])).unwrap()];
    let results = f
        .services
        .receive_transaction(remote(), "junk", &junk, &[])
        .await
        .unwrap();
    assert!(results.is_empty());
}

#[tokio::test]
async fn a_pdu_with_a_bad_signature_is_refused_and_not_stored() {
    let f = fixture(RoomVersionId::V11).await;
    let impostor =
        SigningKey::new("remote1", ed25519_dalek::SigningKey::from_bytes(&[10; 32])).unwrap();
    let mut pdu = f.build(&bob(), message("forged"), None).await;
    let template = message("forged");
    let forged = room::build_pdu(
        &f.rules,
        Some(&f.room),
        template,
        &bob(),
        pdu.prev_events.clone(),
        pdu.auth_events.clone(),
        pdu.depth,
        pdu.origin_server_ts,
        remote(),
        impostor.keypair(),
    )
    .unwrap();
    pdu.json = forged.json;
    let results = f.send("forged", &[&pdu], &[]).await;
    let error = results[&pdu.event_id].as_ref().unwrap_err();
    assert!(error.contains("signature"), "{error}");
    assert!(f.stored(&pdu.event_id).await.is_none());
    assert!(!f.timeline().await.contains(&pdu.event_id.to_string()));
}

#[tokio::test]
async fn a_pdu_with_a_tampered_content_is_stored_redacted() {
    let f = fixture(RoomVersionId::V11).await;
    let mut pdu = f.build(&bob(), message("original"), None).await;
    pdu.json.insert(
        "content".into(),
        ruma::CanonicalJsonValue::Object(
            [(
                "body".to_owned(),
                ruma::CanonicalJsonValue::String("tampered".into()),
            )]
            .into_iter()
            .collect(),
        ),
    );
    let results = f.send("tampered", &[&pdu], &[]).await;
    assert_eq!(results[&pdu.event_id], Ok(()));
    let stored = f.stored(&pdu.event_id).await.unwrap();
    let json: JsonValue = serde_json::from_str(&stored.row.json).unwrap();
    assert_eq!(json["content"], json!({}));
    assert!(f.timeline().await.contains(&pdu.event_id.to_string()));
}

#[tokio::test]
async fn events_failing_authorization_are_rejected_and_leave_the_state_alone() {
    let f = fixture(RoomVersionId::V11).await;
    let name_before = f.current_state("m.room.name", "").await;
    // Bob has power 0; the room name needs 50.
    let rename = PduTemplate::state(TimelineEventType::RoomName, "", json!({"name": "mine"}));
    let rename = f.build(&bob(), rename, None).await;
    // Carol of remote.test never joined.
    let carol = UserId::parse(format!("@carol:{REMOTE}")).unwrap();
    let intruder = f.build(&carol, message("let me in"), None).await;
    let results = f.send("auth", &[&rename, &intruder], &[]).await;
    for pdu in [&rename, &intruder] {
        let error = results[&pdu.event_id].as_ref().unwrap_err();
        assert!(error.contains("not allowed"), "{error}");
        let stored = f.stored(&pdu.event_id).await.unwrap();
        assert!(stored.rejected_reason.is_some());
        assert!(!f.timeline().await.contains(&pdu.event_id.to_string()));
    }
    assert_eq!(f.current_state("m.room.name", "").await, name_before);
    // Sent again, the answer is the stored rejection.
    let results = f.send("auth-again", &[&rename], &[]).await;
    assert!(results[&rename.event_id].is_err());
}

#[tokio::test]
async fn an_event_allowed_before_but_not_now_is_soft_failed() {
    let f = fixture(RoomVersionId::V11).await;
    // Dave keeps remote.test in the room after Bob is banned.
    let dave = UserId::parse(format!("@dave:{REMOTE}")).unwrap();
    let join = f
        .build(&dave, member(dave.as_str(), "join", json!({})), None)
        .await;
    assert_eq!(f.send("dave", &[&join], &[]).await[&join.event_id], Ok(()));
    // Built while Bob is joined, sent after Alice banned him.
    let late = f.build(&bob(), message("too late"), None).await;
    f.services
        .ban(&f.alice, &f.room, &bob(), None)
        .await
        .unwrap();
    let extremities = f.extremities().await;
    let results = f.send("late", &[&late], &[]).await;
    assert_eq!(results[&late.event_id], Ok(()));
    let stored = f.stored(&late.event_id).await.unwrap();
    assert!(stored.soft_failed);
    assert_eq!(f.extremities().await, extremities);
    assert!(!f.timeline().await.contains(&late.event_id.to_string()));
}

#[tokio::test]
async fn unknown_prev_events_refuse_the_pdu_when_the_origin_cannot_fill_the_gap() {
    let f = fixture(RoomVersionId::V11).await;
    let missing = EventId::parse("$missing").unwrap();
    let pdu = f
        .build(&bob(), message("after a gap"), Some(vec![missing]))
        .await;
    let results = f.send("gap", &[&pdu], &[]).await;
    let error = results[&pdu.event_id].as_ref().unwrap_err();
    assert!(error.contains("prev events unknown here"), "{error}");
    assert!(f.stored(&pdu.event_id).await.is_none());
}

#[tokio::test]
async fn forks_are_resolved_into_the_current_state() {
    let f = fixture(RoomVersionId::V11).await;
    // Bob renames himself on the current tip while Alice names the room on the same tip.
    let rename = member(bob().as_str(), "join", json!({"displayname": "Bobby"}));
    let bobby = f.build(&bob(), rename, None).await;
    let name = json!({"name": "Our room"});
    f.services
        .send_state(&f.alice, &f.room, "m.room.name", "", name)
        .await
        .unwrap();
    let results = f.send("fork", &[&bobby], &[]).await;
    assert_eq!(results[&bobby.event_id], Ok(()));
    assert_eq!(f.extremities().await.len(), 2, "two forward extremities");
    assert_eq!(
        f.current_state("m.room.member", bob().as_str())
            .await
            .as_deref(),
        Some(bobby.event_id.as_str())
    );
    assert!(f.current_state("m.room.name", "").await.is_some());

    // A message on both tips merges them; its state holds both changes.
    let merge = f.build(&bob(), message("merged"), None).await;
    assert_eq!(merge.prev_events.len(), 2);
    let results = f.send("merge", &[&merge], &[]).await;
    assert_eq!(results[&merge.event_id], Ok(()));
    assert_eq!(f.extremities().await, [merge.event_id.to_string()]);
    let stored = f.stored(&merge.event_id).await.unwrap();
    let group = stored.row.state_before.unwrap();
    let state = f
        .services
        .db
        .read(move |c| received::state_ids_of_group(c, group))
        .await
        .unwrap();
    let has = |kind: &str, key: &str| state.iter().any(|((k, s), _)| k == kind && s == key);
    assert!(has("m.room.name", ""));
    assert!(state.iter().any(|(_, id)| id == bobby.event_id.as_str()));
}

#[tokio::test]
async fn typing_and_receipt_edus_of_the_origins_joined_users_are_applied() {
    let f = fixture(RoomVersionId::V11).await;
    let start = f.services.typing_position();
    let typing = |user: &str, room: &str| json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": user, "typing": true}});
    let elsewhere = f
        .services
        .create_room(&f.alice, CreateRoom::default())
        .await
        .unwrap();
    let edus = [
        typing("@carol:other.test", f.room.as_str()),
        typing(bob().as_str(), elsewhere.as_str()),
        json!({"edu_type": "m.unknown", "content": {}}),
    ];
    f.send("ignored", &[], &edus).await;
    assert_eq!(f.services.typing_position(), start, "nothing applied");

    f.send("typing", &[], &[typing(bob().as_str(), f.room.as_str())])
        .await;
    let (typists, _) = f.services.typing_since(&f.room, start).unwrap();
    assert_eq!(typists, [bob()]);

    let message = f.build(&bob(), message("read me"), None).await;
    f.send("msg", &[&message], &[]).await;
    let receipt = json!({"edu_type": "m.receipt", "content": {
        f.room.as_str(): {"m.read": {bob().as_str(): {
            "event_ids": [message.event_id.as_str()], "data": {"ts": 1}
        }}}
    }});
    f.send("receipt", &[], &[receipt]).await;
    let rooms = [f.room.clone()];
    let (receipts, _) = f
        .services
        .receipts_since(&f.alice.user_id, &rooms, 0)
        .await
        .unwrap();
    let content = &receipts[&f.room];
    assert!(
        content[message.event_id.as_str()]["m.read"][bob().as_str()].is_object(),
        "{content}"
    );
}

#[tokio::test]
async fn a_remote_redaction_takes_effect_only_on_what_its_server_may_redact() {
    let f = fixture(RoomVersionId::V11).await;
    let own = f.build(&bob(), message("oops"), None).await;
    f.send("own", &[&own], &[]).await;
    let content = json!({"msgtype": "m.text", "body": "alice's"});
    let alices = f
        .services
        .send_message(&f.alice, &f.room, "m.room.message", "a1", content)
        .await
        .unwrap();

    let redact = |target: &OwnedEventId| PduTemplate::redaction(target.clone(), json!({}));
    let first = f.build(&bob(), redact(&own.event_id), None).await;
    let second = f.build(&bob(), redact(&alices), None).await;
    let results = f.send("redactions", &[&first], &[]).await;
    assert_eq!(results[&first.event_id], Ok(()));
    let results = f.send("redactions2", &[&second], &[]).await;
    assert_eq!(results[&second.event_id], Ok(()), "allowed, without effect");

    let stored = f.stored(&own.event_id).await.unwrap();
    assert_eq!(
        stored.row.redacted_by.as_deref(),
        Some(first.event_id.as_str())
    );
    let json: JsonValue = serde_json::from_str(&stored.row.json).unwrap();
    assert_eq!(json["content"], json!({}));
    let untouched = f.stored(&alices).await.unwrap();
    assert!(untouched.row.redacted_by.is_none());
    assert!(untouched.row.json.contains("alice's"));
}

#[tokio::test]
async fn a_server_denied_by_the_room_acl_is_refused() {
    let f = fixture(RoomVersionId::V11).await;
    let acl = json!({"allow": ["*"], "deny": [REMOTE], "allow_ip_literals": false});
    f.services
        .send_state(&f.alice, &f.room, "m.room.server_acl", "", acl)
        .await
        .unwrap();
    let pdu = f.build(&bob(), message("still here?"), None).await;
    let results = f.send("acl", &[&pdu], &[]).await;
    let error = results[&pdu.event_id].as_ref().unwrap_err();
    assert!(error.contains("server ACL"), "{error}");
    assert!(f.stored(&pdu.event_id).await.is_none());
}

#[tokio::test]
async fn presence_edus_of_the_origins_users_reach_their_room_mates() {
    let f = fixture(RoomVersionId::V11).await;
    let presence = |user: &str| {
        json!({"edu_type": "m.presence", "content": {"push": [
            {"user_id": user, "presence": "online", "status_msg": "here", "last_active_ago": 0}
        ]}})
    };
    let start = f.services.presence_position().await.unwrap();
    f.send(
        "p0",
        &[],
        &[presence("@carol:other.test"), presence("@alice:localhost")],
    )
    .await;
    assert_eq!(f.services.presence_position().await.unwrap(), start);

    f.send("p1", &[], &[presence(bob().as_str())]).await;
    let (events, _) = f
        .services
        .presence_since(&f.alice.user_id, start)
        .await
        .unwrap();
    let bobs = events
        .iter()
        .find(|e| e["sender"] == bob().as_str())
        .unwrap_or_else(|| panic!("no presence of Bob: {events:?}"));
    assert_eq!(bobs["content"]["presence"], "online");
    assert_eq!(bobs["content"]["status_msg"], "here");
}

#[tokio::test]
async fn a_local_event_after_a_fork_has_the_resolved_state_before_it() {
    let f = fixture(RoomVersionId::V11).await;
    let rename = member(bob().as_str(), "join", json!({"displayname": "Bobby"}));
    let bobby = f.build(&bob(), rename, None).await;
    let name = json!({"name": "Our room"});
    let named = f
        .services
        .send_state(&f.alice, &f.room, "m.room.name", "", name)
        .await
        .unwrap();
    f.send("fork", &[&bobby], &[]).await;
    assert_eq!(f.extremities().await.len(), 2);

    let content = json!({"msgtype": "m.text", "body": "after the fork"});
    let merged = f
        .services
        .send_message(&f.alice, &f.room, "m.room.message", "m1", content)
        .await
        .unwrap();
    assert_eq!(f.extremities().await, [merged.to_string()]);
    let stored = f.stored(&merged).await.unwrap();
    let group = stored.row.state_before.unwrap();
    let state = f
        .services
        .db
        .read(move |c| received::state_ids_of_group(c, group))
        .await
        .unwrap();
    let ids: Vec<&str> = state.iter().map(|(_, id)| id.as_str()).collect();
    assert!(ids.contains(&named.as_str()), "the room name: {state:?}");
    assert!(
        ids.contains(&bobby.event_id.as_str()),
        "Bob's rename: {state:?}"
    );
}

#[tokio::test]
async fn a_remote_state_event_on_linear_history_updates_the_current_state() {
    let f = fixture(RoomVersionId::V11).await;
    let rename = member(bob().as_str(), "join", json!({"displayname": "Bobby"}));
    let bobby = f.build(&bob(), rename, None).await;
    assert_eq!(
        f.send("rename", &[&bobby], &[]).await[&bobby.event_id],
        Ok(())
    );
    assert_eq!(
        f.current_state("m.room.member", bob().as_str())
            .await
            .as_deref(),
        Some(bobby.event_id.as_str())
    );
    assert!(f.current_state("m.room.power_levels", "").await.is_some());
    // Bob leaves; remote.test has no member left, so it may send nothing more.
    let leave = f
        .build(&bob(), member(bob().as_str(), "leave", json!({})), None)
        .await;
    assert_eq!(
        f.send("leave", &[&leave], &[]).await[&leave.event_id],
        Ok(())
    );
    assert_eq!(
        f.services
            .membership_of(&f.room, &bob())
            .await
            .unwrap()
            .as_deref(),
        Some("leave")
    );
    let after = f.build(&bob(), message("ghost"), None).await;
    let error = f.send("ghost", &[&after], &[]).await[&after.event_id].clone();
    assert!(error.unwrap_err().contains("no joined member"));
}
